"""`ecigdis-ws bench`: a load generator for this server and the Node.js peer.

It speaks Engine.IO v4 / Socket.IO v5 over raw websockets (wire.py) instead of
python-socketio's AsyncClient, which costs far more per connection and per packet
than the server it would measure, and spreads its clients over worker processes
(worker.py) that report raw samples and counters to the parent (runner.py), which
merges them into one report (report.py).
"""
