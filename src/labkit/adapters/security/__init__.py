"""Security helpers shared by the portal and the SSH bastion (password hashing)."""
