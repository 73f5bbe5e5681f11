"""`kdns explain`: what kdns answers for a name, why, and which objects made each record.

The pure part reads one snapshot and the index's objects of the same moment:
kdns.explain.why (the explanation), .provenance (the objects behind a record), .negative
(why NXDOMAIN, NODATA or SERVFAIL, and the names that look alike), .search (a pod's
search-path walk) and .report (the values, their JSON and text forms). kdns.explain.command
is the `kdns explain` command (a source of its own, or a running kdns's /explain endpoint).
"""

from kdns.explain.report import Explanation, from_json, text
from kdns.explain.why import View, explain

__all__ = ["Explanation", "View", "explain", "from_json", "text"]
