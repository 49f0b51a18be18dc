#!/usr/bin/env python3
"""Write assets/model/coco_labels.json: YOLOX's 80 COCO classes as everyday,
Rekognition-style label names with their parents (all ancestors, nearest first),
and the ancestors of each of those parents.

Names and parents follow assets/taxonomy/everyday.json wherever it knows the
name, so the detector, the classifier and the headline rule agree; the few
names it does not know get the parents listed in EXTRA below. Python stdlib
only. Usage: python3 tools/make_coco_labels.py
"""

import json
import os

# COCO class order as the model outputs it: (COCO name, label name).
COCO = [
    ("person", "Person"), ("bicycle", "Bicycle"), ("car", "Car"),
    ("motorcycle", "Motorcycle"), ("airplane", "Airplane"), ("bus", "Bus"),
    ("train", "Train"), ("truck", "Truck"), ("boat", "Boat"),
    ("traffic light", "Traffic Light"), ("fire hydrant", "Fire Hydrant"),
    ("stop sign", "Stop Sign"), ("parking meter", "Parking Meter"), ("bench", "Bench"),
    ("bird", "Bird"), ("cat", "Cat"), ("dog", "Dog"), ("horse", "Horse"),
    ("sheep", "Sheep"), ("cow", "Cow"), ("elephant", "Elephant"), ("bear", "Bear"),
    ("zebra", "Zebra"), ("giraffe", "Giraffe"), ("backpack", "Backpack"),
    ("umbrella", "Umbrella"), ("handbag", "Handbag"), ("tie", "Tie"),
    ("suitcase", "Suitcase"), ("frisbee", "Frisbee"), ("skis", "Ski"),
    ("snowboard", "Snowboard"), ("sports ball", "Ball"), ("kite", "Kite"),
    ("baseball bat", "Baseball Bat"), ("baseball glove", "Baseball Glove"),
    ("skateboard", "Skateboard"), ("surfboard", "Surfboard"),
    ("tennis racket", "Racket"), ("bottle", "Bottle"), ("wine glass", "Wine Glass"),
    ("cup", "Cup"), ("fork", "Fork"), ("knife", "Knife"), ("spoon", "Spoon"),
    ("bowl", "Bowl"), ("banana", "Banana"), ("apple", "Apple"),
    ("sandwich", "Sandwich"), ("orange", "Orange"), ("broccoli", "Broccoli"),
    ("carrot", "Carrot"), ("hot dog", "Hot Dog"), ("pizza", "Pizza"),
    ("donut", "Donut"), ("cake", "Cake"), ("chair", "Chair"), ("couch", "Couch"),
    ("potted plant", "Potted Plant"), ("bed", "Bed"), ("dining table", "Dining Table"),
    ("toilet", "Toilet"), ("tv", "Television"), ("laptop", "Laptop"),
    ("mouse", "Computer Mouse"), ("remote", "Remote Control"),
    ("keyboard", "Computer Keyboard"), ("cell phone", "Mobile Phone"),
    ("microwave", "Microwave"), ("oven", "Oven"), ("toaster", "Toaster"),
    ("sink", "Sink"), ("refrigerator", "Refrigerator"), ("book", "Book"),
    ("clock", "Clock"), ("vase", "Vase"), ("scissors", "Scissors"),
    ("teddy bear", "Teddy Bear"), ("hair drier", "Hair Dryer"),
    ("toothbrush", "Toothbrush"),
]

# Direct parents of names (and their new ancestors) everyday.json lacks. Where
# the classifier's WordNet hierarchy (assets/model/labels.json) also knows a
# name, only parents it agrees with are given here (imgtag adds the
# classifier's ancestors at run time): e.g. a ski is a "Runner" there, not
# "Sports Equipment", so Ski gets none of its own. COCO's "kite" is "Kite":
# the classifier's bird of that name is "Kite (Bird)", a parent-only name
# (assets/taxonomy/local_names.json).
EXTRA = {
    "Traffic Light": ["Light"], "Light": [],
    "Fire Hydrant": ["Hydrant"], "Hydrant": [],
    "Stop Sign": ["Road Sign"], "Road Sign": ["Sign"], "Sign": ["Symbol"], "Symbol": [],
    "Parking Meter": [],
    "Elephant": ["Mammal", "Animal"], "Zebra": ["Mammal", "Animal"],
    "Giraffe": ["Mammal", "Animal"],
    "Backpack": ["Bag"], "Bag": [],
    "Umbrella": [], "Suitcase": ["Luggage"], "Luggage": [],
    "Frisbee": ["Toy"], "Kite": ["Toy"], "Toy": [], "Teddy Bear": ["Toy"],
    "Ski": [], "Snowboard": ["Sports Equipment"],
    "Ball": [], "Baseball Bat": ["Sports Equipment"],
    "Baseball Glove": ["Sports Equipment"], "Skateboard": ["Sports Equipment"],
    "Surfboard": ["Sports Equipment"], "Racket": [],
    "Sports Equipment": [],
    "Wine Glass": ["Glass", "Tableware"], "Glass": [], "Knife": [],
    "Orange": ["Fruit"], "Broccoli": ["Vegetable"], "Carrot": ["Vegetable"],
    "Hot Dog": ["Food"], "Donut": ["Dessert"],
    "Dining Table": ["Table"], "Toilet": [], "Sink": [],
    "Computer Mouse": ["Computer Hardware", "Electronics"], "Computer Hardware": ["Electronics"],
    "Remote Control": [],
    "Microwave": ["Appliance"], "Oven": ["Appliance"], "Toaster": ["Appliance"],
    "Refrigerator": ["Appliance"], "Hair Dryer": ["Appliance"], "Appliance": [],
    "Book": ["Publication"], "Publication": [], "Clock": [], "Vase": ["Pottery"],
    "Pottery": [], "Scissors": [], "Toothbrush": ["Brush"], "Brush": [],
}


def ancestors(name, parents):
    """All ancestors of name, nearest first (breadth first), each once."""
    out, frontier = [], [name]
    while frontier:
        nxt = []
        for n in frontier:
            for p in parents.get(n, []):
                if p not in out and p != name:
                    out.append(p)
                    nxt.append(p)
        frontier = nxt
    return out


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "assets/taxonomy/everyday.json")) as f:
        everyday = {e["name"]: e["parents"] for e in json.load(f)["labels"]}
    clash = sorted(set(EXTRA) & set(everyday))
    if clash:
        raise SystemExit(f"EXTRA redefines everyday.json names: {clash}")
    parents = {**everyday, **EXTRA}
    classes = []
    for coco, name in COCO:
        if name not in parents:
            raise SystemExit(f"{name} ({coco}) has no parents entry")
        classes.append({"coco": coco, "name": name, "parents": ancestors(name, parents)})
    assert len(classes) == 80
    # Every ancestor's own ancestors, so parent labels get their parents.
    named = sorted({p for c in classes for p in c["parents"]})
    parent_labels = {n: ancestors(n, parents) for n in named}
    doc = {
        "format": 1,
        "licence": "imgtag's own mapping of the 80 COCO class names to everyday label "
                   "names, MIT OR Apache-2.0 like the crate; generated by "
                   "tools/make_coco_labels.py from assets/taxonomy/everyday.json",
        "classes": classes,
        "parents": parent_labels,
    }
    out = os.path.join(root, "assets/model/coco_labels.json")
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
