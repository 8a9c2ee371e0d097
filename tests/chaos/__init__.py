"""The nemesis: seeded faults against mixed traffic on the real stack, and a history checker."""
