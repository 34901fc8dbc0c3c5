"""The rule book: facts from the standards that probes, checks and the annex all judge against.

Below probes, checks and annex in the layering (it imports none of them). Facts that may need
correcting stay data (YAML/CSV beside the code or in configs/), each entry citing its source.
"""
