"""The live WebSocket session as a sans-I/O state machine (:mod:`application.live.session`) and
the values it takes and gives (:mod:`application.live.actions`)."""
