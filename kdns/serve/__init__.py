"""The trio shell: sockets in, the responder in the middle, sockets out.

* `serving`: the slow path both transports share (`Serving`), with its one seam for tests;
* `udp`, `tcp`: the transports; `listeners`: binding their sockets;
* `forward`: the client of the upstream resolvers.
"""
