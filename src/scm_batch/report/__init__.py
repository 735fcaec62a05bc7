"""The run report: what happened in a batch, from its ledger, as data (:mod:`.data`) and as one
self-contained HTML page of charts (:mod:`.page`, :mod:`.charts`)."""
