"""People's labels: label files and the HANNA / WQ adapters (`humans`), the blinded annotation page (`annotate`)
and judges against people (`agreement`)."""
