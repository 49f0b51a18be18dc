#!/usr/bin/env python3
"""Generate assets/taxonomy/everyday.json: the everyday label names imgtag's
shipped taxonomy adds to the WordNet-derived assets/model/labels.json.

Cloud detectors (Rekognition) name labels with everyday words (Pet, Canine,
Vehicle, Clothing, Person, Cup...) that the ImageNet/WordNet table lacks or
places oddly (WordNet's "cup" class is a punch, "plate" a main course). A
document that carries no `Parents` gets its label hierarchy from the
taxonomy, so these names need parents there. The list below is imgtag's own,
hand-curated (MIT OR Apache-2.0, like the crate); it copies no third-party
list.

Standard library only. Usage (from the repository root):
    python3 tools/make_taxonomy.py [--labels assets/model/labels.json]
                                   [--out assets/taxonomy/everyday.json]

Checks before writing: every parent is defined (here or in labels.json), no
name is both a label here and an alias, alias targets exist, dropped edges
exist, and the merged graph (labels.json + this list) has no cycle.
"""

import argparse
import json
import sys

# name -> parents (is-a relations only, Rekognition style: any ancestors may
# be listed, the closure is taken at load time). Part-of relations (a face is
# part of a person, a wheel part of a car) are deliberately absent: they would
# make a detail the "most specific" label of its whole.
EVERYDAY = {
    # --- animals
    "Animal": [],
    "Pet": ["Animal"],
    "Mammal": ["Animal"],
    # Not every feline or canine is a pet, but in photographs labelled by a
    # detector these two nearly always are, and Rekognition lists Pet among
    # a cat's and a dog's parents; Pet must not hide a weak Feline.
    "Feline": ["Mammal", "Animal", "Pet"],
    "Canine": ["Mammal", "Animal", "Pet"],
    "Cat": ["Feline", "Pet", "Mammal", "Animal"],
    "Kitten": ["Cat"],
    "Dog": ["Canine", "Pet", "Mammal", "Animal"],
    "Puppy": ["Dog"],
    "Rodent": ["Mammal"],
    "Hamster": ["Rodent", "Pet"],
    "Rabbit": ["Mammal", "Pet"],
    "Horse": ["Mammal", "Animal"],
    "Livestock": ["Mammal", "Animal"],
    "Cattle": ["Livestock"],
    "Cow": ["Cattle"],
    "Sheep": ["Livestock"],
    "Pig": ["Livestock"],
    "Bear": ["Mammal"],
    "Primate": ["Mammal"],
    "Monkey": ["Primate"],
    "Bird": ["Animal"],
    "Poultry": ["Bird"],
    "Chicken": ["Poultry"],
    "Duck": ["Bird"],
    "Parrot": ["Bird", "Pet"],
    "Fish": ["Animal"],
    "Reptile": ["Animal"],
    "Insect": ["Animal"],
    # --- people
    "Person": [],
    "Adult": ["Person"],
    "Man": ["Adult"],
    "Woman": ["Adult"],
    "Child": ["Person"],
    "Boy": ["Child"],
    "Girl": ["Child"],
    "Baby": ["Child"],
    "Face": [],
    # --- clothing
    "Clothing": [],
    "Shirt": ["Clothing"],
    "T-Shirt": ["Shirt"],
    "Pants": ["Clothing"],
    "Jeans": ["Pants"],
    "Shorts": ["Clothing"],
    "Dress": ["Clothing"],
    "Skirt": ["Clothing"],
    "Coat": ["Clothing"],
    "Jacket": ["Coat"],
    "Suit": ["Clothing"],
    "Sweater": ["Clothing"],
    "Sweatshirt": ["Clothing"],
    "Hoodie": ["Sweatshirt"],
    "Footwear": ["Clothing"],
    "Shoe": ["Footwear"],
    "Sneaker": ["Shoe"],
    "Boot": ["Footwear"],
    "Sock": ["Clothing"],
    "Hat": ["Clothing"],
    "Cap": ["Hat"],
    "Accessories": [],
    "Tie": ["Accessories"],
    "Belt": ["Accessories"],
    "Handbag": ["Bag", "Accessories"],
    "Glasses": ["Accessories"],
    "Sunglasses": ["Glasses"],
    "Jewelry": ["Accessories"],
    "Necklace": ["Jewelry"],
    "Ring": ["Jewelry"],
    "Wristwatch": ["Accessories"],
    # --- food and drink
    "Food": [],
    "Meal": ["Food"],
    "Dish": ["Food"],
    "Fruit": ["Food"],
    "Apple": ["Fruit"],
    "Banana": ["Fruit"],
    "Citrus Fruit": ["Fruit"],
    "Vegetable": ["Food"],
    "Bread": ["Food"],
    "Pizza": ["Food"],
    "Burger": ["Food"],
    "Sandwich": ["Food"],
    "Salad": ["Food"],
    "Dessert": ["Food"],
    "Cake": ["Dessert"],
    "Beverage": [],
    "Coffee": ["Beverage"],
    "Espresso": ["Coffee"],
    "Latte": ["Coffee"],
    "Cappuccino": ["Coffee"],
    "Tea": ["Beverage"],
    "Juice": ["Beverage"],
    "Milk": ["Beverage"],
    "Alcohol": ["Beverage"],
    "Wine": ["Alcohol"],
    "Beer": ["Alcohol"],
    "Cocktail": ["Alcohol"],
    # --- tableware (things to eat and drink from, not food)
    "Tableware": [],
    "Cup": ["Tableware"],
    "Coffee Cup": ["Cup"],
    "Mug": ["Cup"],
    "Saucer": ["Tableware"],
    "Plate": ["Tableware"],
    "Bowl": ["Tableware"],
    "Cutlery": ["Tableware"],
    "Fork": ["Cutlery"],
    "Spoon": ["Cutlery"],
    "Bottle": [],
    # --- furniture
    "Furniture": [],
    "Chair": ["Furniture"],
    "Table": ["Furniture"],
    "Desk": ["Table"],
    "Couch": ["Furniture"],
    "Bed": ["Furniture"],
    "Shelf": ["Furniture"],
    "Cabinet": ["Furniture"],
    "Bench": ["Furniture"],
    # --- transportation
    "Transportation": [],
    "Vehicle": ["Transportation"],
    "Car": ["Vehicle", "Transportation"],
    "Sports Car": ["Car"],
    "Taxi": ["Car"],
    "Van": ["Vehicle"],
    "Bus": ["Vehicle", "Transportation"],
    "Truck": ["Vehicle", "Transportation"],
    "Bicycle": ["Vehicle", "Transportation"],
    "Motorcycle": ["Vehicle", "Transportation"],
    "Scooter": ["Vehicle"],
    "Train": ["Vehicle", "Transportation"],
    "Aircraft": ["Vehicle", "Transportation"],
    "Airplane": ["Aircraft"],
    "Helicopter": ["Aircraft"],
    "Watercraft": ["Vehicle", "Transportation"],
    "Boat": ["Watercraft"],
    "Ship": ["Watercraft"],
    # --- plants
    "Plant": [],
    "Tree": ["Plant"],
    "Palm Tree": ["Tree"],
    "Flower": ["Plant"],
    "Rose": ["Flower"],
    "Grass": ["Plant"],
    "Leaf": ["Plant"],
    "Potted Plant": ["Plant"],
    # --- buildings
    "Architecture": [],
    "Building": ["Architecture"],
    "House": ["Building"],
    "Office Building": ["Building"],
    "Skyscraper": ["Building"],
    "Tower": ["Architecture"],
    "Church": ["Building"],
    "Castle": ["Building"],
    "Bridge": ["Architecture"],
    # --- electronics
    "Electronics": [],
    "Computer": ["Electronics"],
    "Laptop": ["Computer"],
    "Tablet Computer": ["Computer"],
    "Computer Keyboard": ["Electronics"],
    "Mobile Phone": ["Phone"],
    "Phone": ["Electronics"],
    "Television": ["Electronics"],
    "Monitor": ["Electronics"],
    "Camera": ["Electronics"],
    "Headphones": ["Electronics"],
    "Speaker": ["Electronics"],
    # --- text (the local text detector, src/detection/text.rs)
    "Text": [],
    "Document": ["Text"],
    "Screenshot": ["Text"],
    # --- settings (where, not what)
    "Indoors": [],
    "Room": ["Indoors"],
    "Kitchen": ["Room"],
    "Bedroom": ["Room"],
    "Living Room": ["Room"],
    "Dining Room": ["Room"],
    "Bathroom": ["Room"],
    # Places the classifier names (its scene classes), where a photo was
    # taken: the local detector's scene labels (src/detection/scenes.rs).
    "Restaurant": ["Indoors"],
    "Library": ["Indoors"],
    "Shop": ["Indoors"],
    "Outdoors": [],
    "Nature": [],
    "Landscape": ["Nature", "Outdoors"],
    "Scenery": ["Nature", "Outdoors"],
    "Sky": ["Nature", "Outdoors"],
    "Sea": ["Nature", "Outdoors"],
    "Shoreline": ["Nature", "Outdoors"],
    "Beach": ["Shoreline", "Nature", "Outdoors"],
    "Lake": ["Nature", "Outdoors"],
    "Mountain": ["Nature", "Outdoors"],
    "Valley": ["Nature", "Outdoors"],
    "Cliff": ["Nature", "Outdoors"],
    "City": ["Urban", "Outdoors"],
    "Urban": ["Outdoors"],
    "Street": ["City", "Urban", "Outdoors"],
    "Road": ["Outdoors"],
}

# Settings: labels that say where a photo was taken, not what it shows (they
# and every name below them). The headline rule starts from the most
# confident root that is not a setting, so "Indoors 99.5" cannot hide a weak
# "Feline 65.3"; a photo of only settings still gets a setting headline.
SETTINGS = ["Indoors", "Outdoors", "Nature"]

# Other spellings of the same thing: the alias is looked up as its target.
ALIASES = {
    "Human": "Person",
    "People": "Person",
    "Apparel": "Clothing",
    "Drink": "Beverage",
    "Automobile": "Car",
    "Bike": "Bicycle",
    "Sofa": "Couch",
    "TV": "Television",
    "Cell Phone": "Mobile Phone",
    "Aeroplane": "Airplane",
    "Shoes": "Shoe",
    "Eyeglasses": "Glasses",
}

# WordNet edges of labels.json that contradict the everyday meaning of a
# name: (child, parent). ImageNet's "cup" is the punch served in one, its
# "plate" a main course.
DROP_EDGES = [
    ("Cup", "Punch"),
    ("Plate", "Entree"),
    ("Jacket", "Wrapping"),
    ("Umbrella", "Canopy"),
]

LICENCE = ("imgtag's own hand-curated list of everyday label names, "
           "MIT OR Apache-2.0 like the crate; generated by tools/make_taxonomy.py")


def check(labels):
    nodes = labels["nodes"]
    wn = {n["name"].lower(): [nodes[p]["name"] for p in n["parents"]] for n in nodes}
    every = {k.lower(): k for k in EVERYDAY}
    if len(every) != len(EVERYDAY):
        sys.exit("duplicate name (case-insensitive) in EVERYDAY")
    known = set(wn) | set(every)
    for name, parents in EVERYDAY.items():
        for p in parents:
            if p.lower() not in known:
                sys.exit(f"{name}: parent {p} is defined nowhere")
            if p.lower() == name.lower():
                sys.exit(f"{name} is its own parent")
    for alias, target in ALIASES.items():
        if alias.lower() in every:
            sys.exit(f"alias {alias} is also a label of the list")
        if target.lower() not in known:
            sys.exit(f"alias {alias}: target {target} is defined nowhere")
    for name in SETTINGS:
        if name.lower() not in every:
            sys.exit(f"setting {name} is not a label of the list")
    for child, parent in DROP_EDGES:
        if parent not in wn.get(child.lower(), []):
            sys.exit(f"no labels.json edge {child} -> {parent} to drop")
    # The merged graph, as the Rust loader builds it: every name is looked
    # up through the aliases (so an alias that is also a labels.json node
    # merges into its target), self-edges vanish.
    alias = {a.lower(): t.lower() for a, t in ALIASES.items()}
    resolve = lambda n: alias.get(n.lower(), n.lower())  # noqa: E731
    dropped = {(c.lower(), p.lower()) for c, p in DROP_EDGES}
    graph = {}
    edges = [(c, p) for c, ps in wn.items() for p in ps if (c, p.lower()) not in dropped]
    edges += [(c, p) for c, ps in EVERYDAY.items() for p in ps]
    for child, parent in edges:
        c, p = resolve(child), resolve(parent)
        if c != p:
            graph.setdefault(c, set()).add(p)
    state = {}

    def visit(n, path):
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            sys.exit("cycle: " + " -> ".join(path + [n]))
        state[n] = 1
        for p in sorted(graph.get(n, ())):
            visit(p, path + [n])
        state[n] = 2

    for n in sorted(graph):
        visit(n, [])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", default="assets/model/labels.json")
    ap.add_argument("--out", default="assets/taxonomy/everyday.json")
    args = ap.parse_args()
    with open(args.labels, encoding="utf-8") as f:
        labels = json.load(f)
    check(labels)
    dump = lambda v: json.dumps(v, ensure_ascii=False)  # noqa: E731
    lines = ['{"format": 1,', f' "licence": {dump(LICENCE)},', ' "labels": [']
    items = sorted(EVERYDAY.items(), key=lambda kv: kv[0].lower())
    lines += [f'  {{"name":{dump(k)},"parents":{dump(v)}}}' + ("," if i + 1 < len(items) else "")
              for i, (k, v) in enumerate(items)]
    lines += [' ],', ' "aliases": {']
    al = sorted(ALIASES.items(), key=lambda kv: kv[0].lower())
    lines += [f'  {dump(k)}:{dump(v)}' + ("," if i + 1 < len(al) else "") for i, (k, v) in enumerate(al)]
    lines += [' },', ' "drop_edges": [']
    lines += [f'  {dump([c, p])}' + ("," if i + 1 < len(DROP_EDGES) else "")
              for i, (c, p) in enumerate(DROP_EDGES)]
    lines += [' ],', f' "settings": {dump(SETTINGS)}', '}']
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{args.out}: {len(EVERYDAY)} labels, {len(ALIASES)} aliases, {len(DROP_EDGES)} dropped edges, {len(SETTINGS)} settings")


if __name__ == "__main__":
    main()
