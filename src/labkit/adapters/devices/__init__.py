"""Network devices driven through their CLI (netmiko): config sets and ``show`` commands."""
