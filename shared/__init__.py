"""Common code of the Pumpurs services: the chassis every service stands on."""
