"""The pure core: no I/O, no clock, no environment; randomness only in HPKE sealing."""
