#!/usr/bin/python3
"""Write a "Registry Values" entry (a security option such as LegalNoticeCaption) into a
GPO's GptTmpl.inf in SYSVOL, the way the Windows GPO editor stores it (UTF-16 with a BOM),
register the security extension on the GPO and raise its version so clients apply it.

Usage: set_gpo_setting.py GPO_GUID 'MACHINE\\...\\ValueName' 'text value'
"""

import sys

import ldb
from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB

SECEDIT_EXT = "[{827D319E-6EAC-11D2-A4EA-00C04F79F83A}{803E14A0-B4FB-11D0-A0D0-00A0C90F574B}]"


def main(guid: str, reg_path: str, text: str) -> int:
    lp = LoadParm()
    lp.load_default()
    samdb = SamDB(url=lp.samdb_url(), session_info=system_session(), lp=lp)
    base = str(samdb.domain_dn())
    realm = lp.get("realm").lower()
    gpo_dir = f"{lp.get('path', 'sysvol')}/{realm}/Policies/{guid}"
    secedit = f"{gpo_dir}/MACHINE/Microsoft/Windows NT/SecEdit"
    import os

    os.makedirs(secedit, exist_ok=True)
    inf = ("[Unicode]\r\nUnicode=yes\r\n[Version]\r\nsignature=\"$CHICAGO$\"\r\nRevision=1\r\n"
           f"[Registry Values]\r\n{reg_path}=1,\"{text}\"\r\n")
    with open(f"{secedit}/GptTmpl.inf", "wb") as fh:
        fh.write(b"\xff\xfe" + inf.encode("utf-16-le"))
    dn = f"CN={guid},CN=Policies,CN=System,{base}"
    res = samdb.search(base=dn, scope=ldb.SCOPE_BASE, attrs=["versionNumber"])
    version = int(res[0].get("versionNumber", [0])[0]) + 1
    msg = ldb.Message(ldb.Dn(samdb, dn))
    msg["gPCMachineExtensionNames"] = ldb.MessageElement(SECEDIT_EXT, ldb.FLAG_MOD_REPLACE, "gPCMachineExtensionNames")
    msg["versionNumber"] = ldb.MessageElement(str(version), ldb.FLAG_MOD_REPLACE, "versionNumber")
    samdb.modify(msg)
    with open(f"{gpo_dir}/GPT.INI", "w", encoding="utf-8") as fh:
        fh.write(f"[General]\r\nVersion={version}\r\n")
    print(f"{guid}: {reg_path} set, version {version}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
