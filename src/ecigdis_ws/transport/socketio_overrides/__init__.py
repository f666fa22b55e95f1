"""Every subclass and override of python-socketio and python-engineio, in one place.

The server relies on these private members of the pinned versions (pyproject.toml);
tests/transport/test_socketio_overrides.py names each one and fails, naming it,
when an upgrade removes it or changes its signature:

python-socketio `AsyncServer` (server.py, `ChatSocketServer`):
  `_handle_eio_connect(eio_sid, environ)`, `_handle_eio_message(eio_sid, data)`,
  `_handle_eio_disconnect(eio_sid, reason)`, `_handle_connect(eio_sid, namespace,
  data)`, `_handle_event(eio_sid, namespace, id, data)`, `_handle_event_internal(
  server, sid, eio_sid, data, namespace, id)`, `_handle_disconnect(eio_sid,
  namespace, reason)`; the attributes `environ`, `_binary_packet`,
  `manager_initialized`, `handlers`, `packet_class`.
python-engineio `AsyncServer`: `_async` (the driver table: `translate_request`,
  `websocket`), `sockets`, `reason`; `engineio.payload.Payload`'s class attribute
  `max_decode_packets` (set on a subclass, polling.py `PollingPayload`);
  for a new websocket (websocket_entry.py, `WebSocketEntry`, which does what
  `_handle_connect` does): `start_service_task`, `service_task_handle`,
  `_service_task()`, `generate_id()`, `ping_interval_grace_period`, and the OPEN
  packet's `ping_interval`, `ping_timeout`, `max_http_buffer_size`.
python-engineio `AsyncSocket` (websocket.py, `DirectSocket`, which takes over a
  socket by changing its `__class__`): `queue`, `closed`, `closing`, `upgraded`,
  `upgrading`, `connected`, `receive(pkt)`, `send(pkt)`, `close(wait, abort,
  reason)`, `_websocket_handler(ws)`, the constructor `AsyncSocket(server, sid)`,
  `last_ping`; its heartbeat (websocket_heartbeat.py, `HeartbeatSocket`):
  `schedule_ping()`, `check_ping_timeout()`; the upgrade probe (upgrade_probe.py):
  `upgrading`, `queue`;
  for every session (polling.py, `PollingSocket`, likewise by `__class__`): `poll()`,
  `handle_post_request(environ)`,
  `_upgrade_websocket(environ)`, `engineio.payload.Payload(encoded_payload=...)`,
  and asyncio.Queue's `_put(item)` and `_get()` hooks (`PacketQueue`); the aiohttp
  driver's `WebSocket.wait()`, `environ` and `_sock`.
aiohttp (inbound.py): `WebSocketResponse._reader` and its `_buffer`, the frames
  parsed and not yet received.
aiohttp (handshake_leftovers.py): `BaseRequest._cache`, the `reify` cache; the
  connection's `RequestHandler._parser`, `_upgraded`, `_payload_parser`.
python-socketio `AsyncManager` (managers.py, `DirectEmitManager`): `rooms`,
  `basic_enter_room`, `basic_leave_room`, `get_participants`, `server`.
python-socketio `AsyncRedisManager` (redis_manager.py, `ClusterRedisManager`):
  `_redis_connect()`, `_publish(data)`, `_listen()` (its listening task reads
  this), `_handle_emit(message)`, `is_connected(sid, namespace)`, and the
  attributes `host_id`, `redis_url`, `redis`, `channel`, `connected`, `rooms`.
"""
