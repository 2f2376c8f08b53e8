#!/usr/bin/python3
"""Import the accounts of a CSV file (login,givenName,sn,department,password) into the
Samba AD domain of this controller: one OU per department below OU=<root>, one global
security group GG_<department> per department, every account in its department's OU with
givenName, sn and department, and a member of its department's group.

Usage: import_users.py /root/users.csv ROOT_OU
Safe to run again: existing OUs, groups, accounts and memberships are left as they are.
"""

import csv
import sys

import ldb
from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB


def main(csv_path: str, ou_root: str) -> int:
    lp = LoadParm()
    lp.load_default()
    samdb = SamDB(url=lp.samdb_url(), session_info=system_session(), lp=lp)
    base = str(samdb.domain_dn())

    def exists(expr: str) -> list:
        return list(samdb.search(base=base, scope=ldb.SCOPE_SUBTREE, expression=expr, attrs=["member"]))

    def ensure_ou(dn: str) -> None:
        try:
            samdb.create_ou(dn)
            print(f"OU {dn} created")
        except ldb.LdbError as exc:
            if exc.args[0] != ldb.ERR_ENTRY_ALREADY_EXISTS:
                raise

    ensure_ou(f"OU={ou_root},{base}")
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        login, dept = row["login"].strip(), row["department"].strip()
        ensure_ou(f"OU={dept},OU={ou_root},{base}")
        group = f"GG_{dept}"
        if not exists(f"(&(objectClass=group)(sAMAccountName={group}))"):
            samdb.newgroup(group, groupou=f"OU={ou_root}")
            print(f"group {group} created")
        if not exists(f"(&(objectClass=user)(sAMAccountName={login}))"):
            samdb.newuser(login, row["password"], userou=f"OU={dept},OU={ou_root}",
                          givenname=row["givenName"].strip(), surname=row["sn"].strip(), department=dept)
            print(f"user {login} created in OU={dept}")
        members = [str(m) for m in exists(f"(&(objectClass=group)(sAMAccountName={group}))")[0].get("member", [])]
        user_dn = str(exists(f"(&(objectClass=user)(sAMAccountName={login}))")[0].dn)
        if user_dn.lower() not in (m.lower() for m in members):
            samdb.add_remove_group_members(group, [login], add_members_operation=True)
            print(f"{login} added to {group}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
