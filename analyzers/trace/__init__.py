"""Any Kineto trace, analysed without torch: load -> link -> tables (see docs/traces.md).

`load` reads the file, `link` ties every device event to its launch and the
ranges around it once, `tables` groups the linked events, `report` runs the
three and `export` writes the trace file a run ships.
"""
