"""Analysis and plotting (matplotlib is imported here only, never by the simulator core)."""
