#!/usr/bin/env python3
"""Generate assets/model/labels.json: ImageNet-1k classes plus curated WordNet ancestors.

Inputs (no network needed once they are on disk):
  * the timm wheel (zip): timm/data/_info/imagenet_synsets.txt (class wnids in
    index order) and imagenet_synset_to_lemma.txt (display lemmas)
  * WordNet 3.0 data.noun from Debian's wordnet-base package
    (/usr/share/wordnet/data.noun)

Output format (see tools/README.md):
  {"format": 1, "nodes": [{"wnid", "name", "parents": [node idx...]}...],
   "classes": [node idx for class 0..999]}
Nodes are sorted: the 1000 class nodes first (node i == class i), then the kept
ancestors in wnid order. Parents always point at kept nodes; the graph is a DAG.

Usage:
    python tools/make_labels.py --timm-wheel timm-1.0.31-py3-none-any.whl \
        [--wordnet /usr/share/wordnet/data.noun] [--out assets/model/labels.json]
"""

import argparse
import collections
import glob
import json
import os
import sys
import zipfile

# ---------------------------------------------------------------------------
# Curation
# ---------------------------------------------------------------------------

# Ancestors that are removed: abstract WordNet nodes, scientific-taxonomy
# jargon and catch-all bureaucratic categories. The value is the synset's first
# lemma and is checked against WordNet so that a typo in a wnid is caught.
# Classes (leaves) are never removed.
REMOVE = {
    # --- abstract top of the hierarchy
    "n00001740": "entity", "n00001930": "physical_entity", "n00002684": "object",
    "n00003553": "whole", "n00002137": "abstraction", "n00004258": "living_thing",
    "n00004475": "organism", "n00007347": "causal_agent", "n00020827": "matter",
    "n00020090": "substance", "n00019613": "substance", "n15046900": "solid",
    "n00031921": "relation", "n13809207": "part", "n03892891": "part",
    "n03932203": "piece", "n00019128": "natural_object", "n00024264": "attribute",
    "n00027807": "shape", "n00027167": "location", "n08620061": "point",
    "n08578706": "geographic_point", "n00033020": "communication",
    "n14778436": "agent", "n06793231": "sign", "n06791372": "signal",
    "n06873571": "visual_signal", "n06874019": "light", "n06254669": "medium",
    "n06263609": "print_media", "n06263369": "press", "n02735688": "area",
    "n04377057": "system", "n14580897": "material", "n13865483": "round_shape",
    "n13899200": "sphere", "n09289709": "globule", "n03032811": "circle",
    "n09349797": "mechanism", "n04188643": "sheet", "n04362025": "surface",
    "n03536348": "horizontal_surface", "n07882497": "concoction",
    # --- catch-all artifact categories
    "n00021939": "artifact", "n03575240": "instrumentality",
    "n03076708": "commodity", "n03093574": "consumer_goods",
    "n03257877": "durables", "n00022903": "article", "n04550840": "ware",
    "n03129123": "creation", "n04599396": "work", "n04007894": "product",
    "n03183080": "device", "n03563967": "implement", "n03574816": "instrument",
    "n03294048": "equipment", "n03738472": "mechanism",
    "n03736970": "mechanical_device", "n04341686": "structure",
    "n03122748": "covering", "n04014297": "protective_covering",
    "n04576211": "wheeled_vehicle", "n04170037": "self-propelled_vehicle",
    "n04081844": "restraint", "n03839993": "obstruction",
    "n03795580": "movable_barrier", "n03297735": "establishment",
    "n03953020": "place_of_business", "n03748162": "mercantile_establishment",
    "n04361095": "supporting_structure", "n04359589": "support",
    "n04360501": "support", "n04341414": "structural_member",
    "n04515129": "upright", "n04336034": "strengthener",
    "n02755352": "attachment", "n03091374": "connection",
    "n04060904": "receptacle", "n03391770": "framework",
    "n03619396": "kit", "n03430959": "gear", "n02681518": "adornment",
    "n03125870": "craft", "n03510583": "heavier-than-air_craft",
    "n03666917": "lighter-than-air_craft",
    "n03269401": "electrical_device", "n03277771": "electronic_device",
    "n03163973": "data_input_device", "n03851341": "optical_device",
    "n03664675": "lifting_device", "n03154446": "cutting_implement",
    "n03154073": "cutter", "n03265032": "edge_tool",
    "n04110955": "rotating_mechanism", "n04077430": "reproducer",
    "n03274561": "electro-acoustic_transducer", "n04470953": "transducer",
    "n04015204": "protective_garment", "n03050026": "cloth_covering",
    "n03932670": "piece_of_cloth", "n02756098": "attire",
    "n03863923": "overgarment", "n04580298": "white_goods",  # household linen sense
    "n03252064": "drygoods", "n02914991": "building_complex",
    "n03956922": "plant",  # industrial plant; "Factory" is kept
    "n04602044": "workplace", "n03574555": "institution",
    "n03111690": "correctional_institution", "n03907654": "penal_institution",
    "n03638321": "landing", "n04568557": "web",
    "n09287968": "geological_formation", "n09366317": "natural_elevation",
    "n09366017": "natural_depression",
    # --- plants and food jargon
    "n11675842": "reproductive_structure", "n13087625": "plant_organ",
    "n13086908": "plant_part", "n11552386": "spermatophyte",
    "n13083586": "vascular_plant", "n11665372": "angiosperm",
    "n11689483": "oilseed", "n12997654": "basidiomycete",
    "n07570720": "nutriment", "n07566340": "foodstuff", "n07566863": "starches",
    "n07556970": "course", "n07560652": "fare", "n07705931": "edible_fruit",
    "n07713395": "cruciferous_vegetable", "n07710007": "solanaceous_vegetable",
    "n13138842": "pome", "n07739506": "eating_apple", "n07809368": "flavorer",
    "n03247620": "drug", "n03248958": "drug_of_abuse",
    # --- people
    "n09816771": "associate", "n09626238": "peer", "n10401829": "participant",
    "n10439851": "player", "n09613191": "contestant", "n10072708": "explorer",
    # --- animal taxonomy jargon
    "n01466257": "chordate", "n01471682": "vertebrate",
    "n01886756": "placental", "n01473806": "aquatic_vertebrate",
    "n01661818": "diapsid", "n01661592": "anapsid", "n01662622": "chelonian",
    "n01674216": "saurian", "n01524359": "passerine", "n01525720": "oscine",
    "n02514825": "bony_fish", "n02528163": "teleost_fish",
    "n01428580": "soft-finned_fish", "n02552171": "spiny-finned_fish",
    "n01438208": "cypriniform_fish", "n01439121": "cyprinid",
    "n02554730": "percoid_fish", "n02638596": "ganoid",
    "n02642644": "scorpaenid", "n02642107": "scorpaenoid",
    "n02652668": "plectognath", "n01482071": "elasmobranch",
    "n01480516": "cartilaginous_fish", "n02512938": "food_fish",
    "n01727646": "colubrid_snake", "n01745125": "elapid",
    "n01632047": "ambystomid", "n01676755": "iguanid", "n01687665": "agamid",
    "n01685439": "teiid_lizard", "n01689411": "anguid_lizard",
    "n01692864": "lacertid_lizard", "n01695681": "archosaur",
    "n01700470": "ornithischian", "n01703569": "ceratopsian",
    "n01776192": "acarine", "n01802721": "phasianid",
    "n01789386": "gallinaceous_bird", "n01845477": "anseriform_bird",
    "n01825930": "coraciiform_bird", "n01838038": "piciform_bird",
    "n01831712": "apodiform_bird", "n01822602": "cuculiform_bird",
    "n02051474": "pelecaniform_seabird", "n02055658": "sphenisciform_seabird",
    "n02057731": "pelagic_bird", "n01873982": "metatherian",
    "n01871543": "prototherian", "n01871875": "monotreme",
    "n01909422": "coelenterate", "n01914163": "anthozoan",
    "n01975687": "malacostracan_crustacean", "n01976146": "decapod_crustacean",
    "n02323902": "leporid", "n02323449": "lagomorph",
    "n02394477": "even-toed_ungulate", "n02373336": "odd-toed_ungulate",
    "n02370806": "ungulate", "n02399000": "ruminant", "n02401031": "bovid",
    "n02402010": "bovine", "n02374149": "equine", "n02453108": "pachyderm",
    "n02503127": "proboscidean", "n02453611": "edentate",
    "n02507649": "procyonid", "n02134971": "viverrine",
    "n02441326": "musteline_mammal", "n02274024": "lepidopterous_insect",
    "n02206270": "hymenopterous_insect", "n02226183": "orthopterous_insect",
    "n02232951": "dictyopterous_insect", "n02246011": "homopterous_insect",
    "n02188699": "dipterous_insect", "n02263378": "neuropteron",
    "n02268148": "odonate", "n02231052": "phasmid", "n02274822": "nymphalid",
    "n02279637": "danaid", "n02280458": "pierid",
    "n02171453": "lamellicorn_beetle", "n02171869": "scarabaeid_beetle",
    "n02075927": "pinniped_mammal", "n02062430": "cetacean",
    "n02063224": "baleen_whale", "n02066707": "toothed_whale",
    "n02470899": "anthropoid_ape", "n02152991": "game",  # hunted animals
    "n02384858": "racer", "n01942177": "gastropod",
    "n01968315": "cephalopod", "n02316707": "echinoderm",
    # --- second senses that would only duplicate a clearer node's name
    "n02788689": "bar", "n09214060": "bar", "n09214581": "barrier",
    "n02955065": "cap", "n02954938": "cap", "n03045337": "cloak",
    "n03450516": "gown", "n03513376": "helmet", "n04004475": "printer",
    "n03700963": "machine", "n04151940": "screen", "n03636248": "lamp",
    "n03725035": "mask", "n03959936": "plate", "n03959701": "plate",
    "n04038727": "rack", "n04191943": "shelter", "n04192858": "shield",
    "n13899404": "ball", "n14939900": "fluid",
}

# WordNet hypernym edges (child wnid, parent wnid) that are ignored because
# they make a chain read oddly for a photo tagger.
DROP_EDGES = {
    ("n04576211", "n03094503"),  # wheeled vehicle -> container
}

# Display-name overrides for kept nodes (wnid -> name), applied before
# duplicate resolution. Used to turn a WordNet lemma into the everyday word a
# photo tagger would use.
RENAME = {
    "n03100490": "Transportation",     # conveyance, transport
    "n01317541": "Pet",                # domestic animal (118 dogs + 5 house cats)
    "n03278248": "Electronics",        # electronic equipment
    "n04508163": "Underwear",          # undergarment
    "n03502509": "Headwear",           # headdress, headgear
    "n03665366": "Light Source",       # light, light source
    "n04263760": "Lighting",           # source of illumination (candle, lantern, spotlight...)
    "n04530566": "Watercraft",         # vessel (watercraft sense)
    "n04531098": "Vessel",             # vessel (container sense)
    "n07555863": "Food",               # food, solid food
    "n00021265": "Food",               # food, nutrient  (merged, see MERGE)
    "n02704792": "Amphibious Vehicle", # class: amphibian, amphibious vehicle
    "n02891788": "Brass Instrument",   # brass (wind instrument)
    "n02958343": "Car",                # car, auto, automobile
    "n02959942": "Railcar",            # car, railcar
    "n02113186": "Cardigan Welsh Corgi",  # class: Cardigan, Cardigan Welsh corgi
    "n03100346": "Sofa Bed",           # convertible, sofa bed
    "n03126707": "Crane (Machine)",    # class
    "n02012849": "Crane (Bird)",       # class
    "n03206908": "Serving Dish",       # dish (dishware)
    "n01694709": "Monitor Lizard",     # class: monitor lizard
    "n03991062": "Flowerpot",          # class: pot, flowerpot
    "n04388743": "Storage Tank",       # tank (vessel for liquids)
    "n04152593": "Screen (Display)",   # class: screen, CRT screen
    "n04151581": "Screen (Mesh)",      # screen (protective netting)
}

# Kept nodes that mean the same thing to a user: the second wnid is merged
# into the first (its parents and children are moved to the first).
MERGE = [
    ("n00021265", "n07555863"),  # food (nutrient) <- food (solid food)
    ("n03380867", "n03381126"),  # footwear (clothing) <- footwear (covering)
    ("n04379243", "n04379964"),  # table (furniture) <- table (laid for a meal)
]

# Sanity checks: (class wnid, names that must be among its ancestors,
# "any-of" groups where at least one name must be an ancestor).
SANITY = [
    ("n02123045", ["Cat", "Feline", "Mammal", "Animal"], []),       # tabby
    ("n07920052", ["Coffee", "Beverage"], []),                       # espresso
]
SANITY_ANY_CLASS = (["n03785016", "n03791053"],                     # moped / motor scooter
                    ["Vehicle"], [["Motorcycle", "Motor Vehicle"]])


# ---------------------------------------------------------------------------
# WordNet
# ---------------------------------------------------------------------------

class WordNet:
    def __init__(self, path):
        with open(path, "rb") as fh:
            self.data = fh.read()
        self.cache = {}

    def synset(self, wnid):
        """Return (lemmas, hypernym wnids) for a noun wnid like 'n02123045'."""
        if wnid in self.cache:
            return self.cache[wnid]
        assert wnid[0] == "n" and len(wnid) == 9, wnid
        off = int(wnid[1:])
        end = self.data.index(b"\n", off)
        if off > 0 and self.data[off - 1:off] != b"\n":
            raise ValueError(f"{wnid}: offset is not at a line start")
        f = self.data[off:end].decode("utf-8").split(" ")
        if int(f[0]) != off or f[2] not in ("n",):
            raise ValueError(f"{wnid}: bad data.noun line")
        w_cnt = int(f[3], 16)
        lemmas = [f[4 + 2 * i] for i in range(w_cnt)]
        i = 4 + 2 * w_cnt
        p_cnt = int(f[i])
        i += 1
        hyper = []
        for _ in range(p_cnt):
            sym, target, pos, _srctgt = f[i:i + 4]
            i += 4
            if sym in ("@", "@i") and pos == "n":
                hyper.append("n" + target)
        self.cache[wnid] = (lemmas, hyper)
        return self.cache[wnid]


def title(text):
    """'tabby cat' -> 'Tabby Cat'; words with inner capitals ('iPod', 'CD') are kept."""
    words = []
    for w in text.replace("_", " ").split():
        if any(c.isupper() for c in w[1:]):
            words.append(w)
        else:
            words.append(w[:1].upper() + w[1:])
    return " ".join(words)


def find_timm_wheel(arg):
    if arg:
        return arg
    cands = sorted(glob.glob("timm-*.whl")) + sorted(glob.glob("/tmp/timm-*.whl"))
    if not cands:
        sys.exit("pass --timm-wheel (pip download timm==1.0.31 --no-deps -d DIR)")
    return cands[-1]


# ---------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------

def build(wheel, wordnet_path):
    with zipfile.ZipFile(wheel) as z:
        classes = z.read("timm/data/_info/imagenet_synsets.txt").decode().split()
        lemma_lines = z.read("timm/data/_info/imagenet_synset_to_lemma.txt").decode().splitlines()
    assert len(classes) == 1000 and len(set(classes)) == 1000
    lemma = dict(line.split("\t", 1) for line in lemma_lines if line.strip())
    wn = WordNet(wordnet_path)
    class_set = set(classes)

    for wnid, first in REMOVE.items():
        got = wn.synset(wnid)[0][0]
        if got.lower() != first.lower():
            raise ValueError(f"REMOVE {wnid}: expected {first}, WordNet says {got}")
        if wnid in class_set:
            raise ValueError(f"REMOVE {wnid} is a class")

    # 1. all ancestors (full DAG) of the classes
    all_nodes = set()
    stack = list(classes)
    while stack:
        w = stack.pop()
        if w in all_nodes:
            continue
        all_nodes.add(w)
        stack.extend(wn.synset(w)[1])
    for wnid in REMOVE:
        if wnid not in all_nodes:
            raise ValueError(f"REMOVE {wnid} is not an ancestor of any class (stale entry)")

    # 2. kept parents: replace removed hypernyms by their kept ancestors, transitively
    memo = {}

    def kept_parents(w):
        if w in memo:
            return memo[w]
        out = []
        for h in wn.synset(w)[1]:
            if (w, h) in DROP_EDGES:
                continue
            if h in REMOVE:
                cand = kept_parents(h)
            else:
                cand = [h]
            for c in cand:
                if c not in out:
                    out.append(c)
        memo[w] = out
        return out

    kept = set(classes)
    parents = {}
    stack = list(classes)
    while stack:
        w = stack.pop()
        if w in parents:
            continue
        parents[w] = list(kept_parents(w))
        for p in parents[w]:
            kept.add(p)
            stack.append(p)

    # 3. merges
    for keep, gone in MERGE:
        assert keep in kept and gone in kept, (keep, gone)
        for w in kept:
            parents[w] = [keep if p == gone else p for p in parents[w]]
        for p in parents.pop(gone):
            if p not in parents[keep] and p != keep:
                parents[keep].append(p)
        kept.discard(gone)
    for w in kept:  # de-duplicate after merges
        seen = []
        for p in parents[w]:
            if p not in seen and p != w:
                seen.append(p)
        parents[w] = seen

    # 4. drop redundant direct edges (a parent that is also reachable through
    # another parent), so each node lists only its nearest kept hypernyms
    anc_memo = {}

    def ancestors(w):
        if w not in anc_memo:
            s = set()
            for p in parents[w]:
                s.add(p)
                s |= ancestors(p)
            anc_memo[w] = s
        return anc_memo[w]

    for w in kept:
        ps = parents[w]
        parents[w] = [p for p in ps if not any(p in ancestors(q) for q in ps if q != p)]
    anc_memo.clear()

    # 5. names
    name = {}
    for w in kept:
        if w in RENAME:
            name[w] = RENAME[w]
        elif w in class_set:
            name[w] = title(lemma[w].split(",")[0].strip())
        else:
            name[w] = title(wn.synset(w)[0][0])

    # 6. duplicate names: append the name of a kept parent (or a second lemma)
    disamb = []
    by_name = collections.defaultdict(list)
    for w in kept:
        by_name[name[w]].append(w)
    for nm, ws in sorted(by_name.items()):
        if len(ws) < 2:
            continue
        for w in sorted(ws):
            qual = None
            for p in parents[w]:
                pn = name[p]
                if pn != nm:
                    qual = pn
                    break
            if qual is None:
                lems = lemma[w].split(",") if w in class_set else wn.synset(w)[0]
                qual = title(lems[1].strip()) if len(lems) > 1 else w
            name[w] = f"{nm} ({qual})"
            disamb.append((w, name[w]))
    names_now = collections.Counter(name[w] for w in kept)
    dup = [n for n, c in names_now.items() if c > 1]
    if dup:
        raise ValueError(f"still duplicated names (add a RENAME or MERGE entry): {dup}")

    # 7. order and index
    others = sorted(kept - class_set)
    order = list(classes) + others
    index = {w: i for i, w in enumerate(order)}
    nodes = [{"wnid": w, "name": name[w], "parents": [index[p] for p in parents[w]]}
             for w in order]
    out = {
        "format": 1,
        "source": "ImageNet-1k class order from timm imagenet_synsets.txt; "
                  "hypernyms from WordNet 3.0 data.noun; curated by tools/make_labels.py",
        "nodes": nodes,
        "classes": list(range(1000)),
    }
    return out, disamb


def ancestor_names(doc, node):
    seen, stack = set(), list(doc["nodes"][node]["parents"])
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(doc["nodes"][n]["parents"])
    return {doc["nodes"][n]["name"] for n in seen}


def chains(doc, node):
    """All root-to-node paths, as lists of names."""
    nd = doc["nodes"][node]
    if not nd["parents"]:
        return [[nd["name"]]]
    res = []
    for p in nd["parents"]:
        for c in chains(doc, p):
            res.append(c + [nd["name"]])
    return res


def check(doc):
    wnid_to_class = {doc["nodes"][n]["wnid"]: i for i, n in enumerate(doc["classes"])}
    for wnid, must, _ in SANITY:
        anc = ancestor_names(doc, doc["classes"][wnid_to_class[wnid]])
        missing = [m for m in must if m not in anc]
        assert not missing, f"{wnid}: missing ancestors {missing}; has {sorted(anc)}"
    cls, must, any_groups = SANITY_ANY_CLASS
    ok = False
    for wnid in cls:
        anc = ancestor_names(doc, doc["classes"][wnid_to_class[wnid]])
        if all(m in anc for m in must) and all(any(a in anc for a in g) for g in any_groups):
            ok = True
    assert ok, f"none of {cls} has {must} and one of {any_groups}"
    # structural checks
    n = len(doc["nodes"])
    for i, nd in enumerate(doc["nodes"]):
        assert all(0 <= p < n and p != i for p in nd["parents"])
    assert doc["classes"] == list(range(1000))
    # acyclic
    state = {}

    def visit(i):
        if state.get(i) == 1:
            raise AssertionError("cycle")
        if state.get(i) == 2:
            return
        state[i] = 1
        for p in doc["nodes"][i]["parents"]:
            visit(p)
        state[i] = 2

    for i in range(n):
        visit(i)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timm-wheel", help="path to timm-*.whl (a zip)")
    ap.add_argument("--wordnet", default="/usr/share/wordnet/data.noun")
    ap.add_argument("--out", default=os.path.join(here, "..", "assets", "model", "labels.json"))
    ap.add_argument("-v", "--verbose", action="store_true", help="list disambiguated names")
    args = ap.parse_args()

    sys.setrecursionlimit(10000)
    doc, disamb = build(find_timm_wheel(args.timm_wheel), args.wordnet)
    check(doc)

    out = os.path.normpath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        # one node per line: compact but diff-friendly
        fh.write('{"format": 1,\n "source": ' + json.dumps(doc["source"]) + ',\n "nodes": [\n')
        for i, nd in enumerate(doc["nodes"]):
            sep = "," if i + 1 < len(doc["nodes"]) else ""
            fh.write("  " + json.dumps(nd, ensure_ascii=False, separators=(",", ":")) + sep + "\n")
        fh.write(' ],\n "classes": ' + json.dumps(doc["classes"], separators=(",", ":")) + "\n}\n")
    with open(out, encoding="utf-8") as fh:
        assert json.load(fh) == doc

    n_anc = len(doc["nodes"]) - 1000
    roots = [nd["name"] for nd in doc["nodes"] if not nd["parents"]]
    print(f"wrote {out}: {len(doc['nodes'])} nodes (1000 classes + {n_anc} ancestors), "
          f"{len(roots)} roots, {len(disamb)} disambiguated names")
    if args.verbose:
        for w, nm in disamb:
            print(f"  disambiguated {w}: {nm}")
        print("  roots:", ", ".join(sorted(roots)))
    for wnid in ["n02123045", "n07920052", "n03785016", "n03791053", "n02110958", "n04037443"]:
        ci = [doc["nodes"][i]["wnid"] for i in doc["classes"]].index(wnid)
        for c in chains(doc, doc["classes"][ci]):
            print(f"  [{ci}] " + " > ".join(c))


if __name__ == "__main__":
    main()
