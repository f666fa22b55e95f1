"""`ecigdis-ws bench`: a load generator for this server and the Node.js peer.

It speaks Engine.IO v4 / Socket.IO v5 over raw websockets instead of python-socketio's
AsyncClient, which costs far more per connection and per packet than the server it
would measure: a sans-I/O connection parses and builds the frames (connection.py,
wire.py) and a thin asyncio Protocol moves the bytes (client.py). Its clients are
spread over worker processes (worker.py) that record what they receive (recorder.py)
and report raw samples and counters to the parent (runner.py), which drives the
stages of the run over them (stages.py, worker_pool.py) and merges what they report
into one report (report.py, run_totals.py).
"""
