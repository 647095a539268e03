"""Who may do what: accounts, passwords, and the guard every API route goes through."""
