"""`make soak` (run as `python -m perf.soak`, see __main__.py), one module per job:

* `cluster`: the Services in the test API server and the changes made to them (`Churn`);
* `expected`: what kdns must answer for each name at any moment;
* `upstream`: the stub upstream in a thread; `abuse`: the bad UDP packets and TCP clients;
* `hostile`: the hostile upstream (tests/hostiledns.py) and the padding flood (issue 13);
* `server`: the kdns process, its log, memory, CPU and /metrics;
* `load`: dnsperf runs back to back (`parse` summarises each one's output in a child process);
* `faults`: the fault schedule and its injection; `checks`: the answers asked and judged;
* `run`: one soak from start to end; `report`: the results section and the README's row.
"""

SERVER_CORE, CLIENT_CORE = 1, 0  # kdns runs on one core, dnsperf and the soak on the other


class SoakError(Exception):
    """The soak could not run (not a finding about kdns)."""
