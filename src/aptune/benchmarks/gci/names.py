"""Name pools for constructed GCI items. Train/dev and test draw from disjoint pools, so a
model cannot key an answer to a name it was trained on. All names are invented combinations."""

from __future__ import annotations

import random

PEOPLE: dict[str, tuple[list[str], list[str]]] = {
    "train": (
        ["Alice", "Brian", "Carmen", "Dmitri", "Elena", "Farid", "Grace", "Hector", "Ingrid", "Jamal",
         "Keiko", "Liam", "Marta", "Nikhil", "Olga", "Pedro"],
        ["Abbott", "Barros", "Chen", "Dalton", "Eriksen", "Fischer", "Gupta", "Hale", "Ibarra", "Jensen",
         "Kowalski", "Lindqvist", "Moreau", "Novak", "Okafor", "Price"],
    ),
    "test": (
        ["Quentin", "Rosa", "Samir", "Tamsin", "Ulrich", "Vera", "Wendell", "Ximena", "Yusuf", "Zara",
         "Anouk", "Bruno", "Celeste", "Dario", "Esme", "Felix"],
        ["Quiroga", "Rasmussen", "Sato", "Tremblay", "Umarov", "Varga", "Whitlock", "Xu", "Yilmaz", "Zeller",
         "Achebe", "Brandt", "Castellano", "Duval", "Egan", "Ferreira"],
    ),
}

COMPANIES: dict[str, list[str]] = {
    "train": ["Northgate Supplies Ltd.", "Bluefield Builders Inc.", "Orchard Logistics LLC", "Harbor Textiles Co.",
              "Summit Parts Ltd.", "Clearwater Foods Inc.", "Redstone Media LLC", "Pinecrest Holdings Co."],
    "test": ["Silverline Metals Ltd.", "Eastbrook Interiors Inc.", "Copperleaf Farms LLC", "Juniper Freight Co.",
             "Westmoor Printing Ltd.", "Larkspur Software Inc.", "Ironbridge Tools LLC", "Marigold Catering Co."],
}

JURISDICTIONS: dict[str, list[str]] = {
    "train": ["Arden", "Belmora", "Calder", "Dunmore", "Estria", "Ferrow"],
    "test": ["Galvia", "Hollin", "Istra", "Jorvik", "Kestmark", "Lunmere"],
}


def people(rng: random.Random, family: str, k: int) -> list[str]:
    """k distinct full names (distinct first and last names, so short forms stay unambiguous)."""
    first, last = PEOPLE[family]
    return [f"{f} {s}" for f, s in zip(rng.sample(first, k), rng.sample(last, k))]


def company(rng: random.Random, family: str, k: int = 1) -> list[str]:
    return rng.sample(COMPANIES[family], k)


def jurisdiction(rng: random.Random, family: str) -> str:
    return rng.choice(JURISDICTIONS[family])
