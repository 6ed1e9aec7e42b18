"""`mmrank data validate|convert|inspect` (filled by the foundation work)."""
