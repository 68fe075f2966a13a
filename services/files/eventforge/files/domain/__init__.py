"""Files domain: the File aggregate, content rules and money formatting; no I/O."""
