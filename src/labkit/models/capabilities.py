"""What a provider can do for the grader, and what a check needs from it.

A provider declares the capabilities it offers (``Provider.capabilities``); a grader declares
the ones its checks need (``Grader.needs``). ``labkit validate LAB --provider NAME`` and
``labkit up`` refuse a lab whose checks need a capability the provider lacks, naming the
check and the capability, before anything is created.
"""

from __future__ import annotations

from typing import Literal, get_args

Capability = Literal[
    "vantage",        # the grader sends and receives its own packets from a point on a LAN
    "grader_echo",    # grader-to-grader echo between two vantage points (both ends the grader's)
    "capture",        # the grader captures frames on a wire it owns (a link it bridges)
    "link_cut",       # the grader takes a link down (carrier loss, both ends see it)
    "silent_cut",     # the grader drops a link's frames while both ends stay up
    "node_exec",      # a command run in a node by the provider (inside the candidate's system)
    "node_fs",        # a node's files read from outside the node (the candidate cannot lie about them)
    "node_kernel",    # a node's kernel state (addresses, routes) read from outside the node
    "console",        # an interactive console on a node for the candidate (bastion, portal)
    "snapshot_reset", # reset an instance by rolling back snapshots
    "port_map",       # the grader knows, from its own wiring, which port of a segment bridge faces each member
]

ALL_CAPABILITIES: frozenset[Capability] = frozenset(get_args(Capability))

DESCRIPTIONS: dict[str, tuple[str, str]] = {  # capability -> (fr, en)
    "vantage": ("points d'observation du correcteur sur les réseaux du lab",
                "grader vantage points on the lab's networks"),
    "grader_echo": ("écho entre deux points d'observation du correcteur", "echo between two grader vantage points"),
    "capture": ("capture de trames sur un lien du correcteur", "frame capture on a grader-owned link"),
    "link_cut": ("coupure franche d'un lien", "link cut (carrier loss)"),
    "silent_cut": ("coupure silencieuse d'un lien (trames perdues, liens levés)",
                   "silent link cut (frames dropped, links up)"),
    "node_exec": ("commande exécutée dans un nœud", "command run in a node"),
    "node_fs": ("lecture des fichiers d'un nœud depuis l'extérieur", "node files read from outside the node"),
    "node_kernel": ("lecture de l'état noyau d'un nœud depuis l'extérieur",
                    "node kernel state read from outside the node"),
    "console": ("console interactive pour le candidat", "interactive console for the candidate"),
    "snapshot_reset": ("remise à zéro par instantanés", "reset by snapshot rollback"),
    "port_map": ("ports du pont d'un segment connus par le câblage du correcteur",
                 "segment bridge ports known from the grader's own wiring"),
}
