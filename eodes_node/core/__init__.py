"""Sans-IO core: models, canonical encoding, signing, verification and the state machine.

Nothing in this package awaits, logs, or touches the network or a database. It takes
bytes and values and returns values or decisions, so it can be tested exhaustively.
"""
