#!/usr/bin/python3
"""Business data of a backup-restore instance, the same for the same seed: a few hundred
files in nested folders (one per department) and a small SQL dump. Every file carries the
instance's marker line, which the grader looks for in the repository and on the wire.

Usage: gen_data.py ROOT SEED MARKER   (prints a JSON summary; ROOT must not exist yet,
or be empty, unless --force)
"""

from __future__ import annotations

import json
import os
import random
import sys

DEPARTMENTS = {
    "comptabilite": ["factures", "releves", "bilans"],
    "ressources-humaines": ["contrats", "paie", "formations"],
    "commercial": ["devis", "clients", "contrats-cadres"],
    "direction": ["comites", "budgets"],
    "technique": ["procedures", "schemas", "inventaire"],
    "juridique": ["litiges", "statuts"],
}
WORDS = ("client fournisseur facture montant echeance contrat avenant livraison commande stock "
         "salarie conge formation budget prevision tresorerie audit conformite reunion projet "
         "serveur sauvegarde incident maintenance licence garantie remise acompte solde").split()
CITIES = ["Lyon", "Nantes", "Lille", "Rennes", "Dijon", "Metz", "Brest", "Nice", "Tours", "Caen"]


def paragraph(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def text_file(rng: random.Random, marker: str, title: str) -> str:
    lines = [f"# {title}", f"Reference interne : {marker}-{rng.randrange(10**6):06d}", ""]
    for _ in range(rng.randint(3, 40)):
        lines.append(paragraph(rng, rng.randint(8, 30)))
    return "\n".join(lines) + "\n"


def csv_file(rng: random.Random, marker: str) -> str:
    rows = [f"# {marker}", "id;date;libelle;ville;montant"]
    for i in range(rng.randint(10, 120)):
        rows.append(f"{i + 1};2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d};"
                    f"{rng.choice(WORDS)} {rng.choice(WORDS)};{rng.choice(CITIES)};"
                    f"{rng.randint(10, 99999)}.{rng.randint(0, 99):02d}")
    return "\n".join(rows) + "\n"


def sql_dump(rng: random.Random, marker: str) -> str:
    out = [
        "-- Dump of database gestion (PostgreSQL text format)",
        f"-- {marker}",
        "CREATE TABLE clients (id integer PRIMARY KEY, nom text NOT NULL, ville text, encours numeric(12,2));",
        "CREATE TABLE commandes (id integer PRIMARY KEY, client_id integer REFERENCES clients(id), "
        "date_commande date, total numeric(12,2));",
    ]
    for i in range(1, 301):
        out.append(f"INSERT INTO clients VALUES ({i}, 'Societe {rng.choice(WORDS).upper()} {i}', "
                   f"'{rng.choice(CITIES)}', {rng.randint(0, 500000)}.{rng.randint(0, 99):02d});")
    for i in range(1, 801):
        out.append(f"INSERT INTO commandes VALUES ({i}, {rng.randint(1, 300)}, '2025-{rng.randint(1, 12):02d}-"
                   f"{rng.randint(1, 28):02d}', {rng.randint(10, 90000)}.{rng.randint(0, 99):02d});")
    out.append(f"-- end of dump {marker}")
    return "\n".join(out) + "\n"


def generate(root: str, seed: int, marker: str) -> dict[str, int]:
    rng = random.Random(f"backup-restore/{seed}")
    count = size = 0

    def write(rel: str, text: str) -> None:
        nonlocal count, size
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        count += 1
        size += len(text.encode())

    for dept, subs in DEPARTMENTS.items():
        for sub in subs:
            for year in (2023, 2024, 2025):
                for k in range(rng.randint(4, 8)):
                    kind = rng.random()
                    stem = f"{dept}/{sub}/{year}/{sub}-{year}-{k + 1:03d}"
                    if kind < 0.5:
                        write(stem + ".txt", text_file(rng, marker, f"{sub} {year} n°{k + 1}"))
                    elif kind < 0.8:
                        write(stem + ".csv", csv_file(rng, marker))
                    else:
                        write(stem + ".md", text_file(rng, marker, f"Compte rendu {sub} {year}"))
    write("base/gestion.sql", sql_dump(rng, marker))
    return {"files": count, "bytes": size}


def main(argv: list[str]) -> int:
    force = "--force" in argv
    args = [a for a in argv if a != "--force"]
    if len(args) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    root, seed, marker = args[0], int(args[1]), args[2]
    if os.path.isdir(root) and os.listdir(root) and not force:
        print(json.dumps({"changed": False, "root": root}))
        return 0
    summary = generate(root, seed, marker)
    print(json.dumps({"changed": True, "root": root, **summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
