"""Where serialised events go: files (rotating, atomic) and stdout."""
