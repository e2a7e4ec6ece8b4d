"""Proof under faults and load: the fault suite (faults, history, proxy) and the load suite."""
