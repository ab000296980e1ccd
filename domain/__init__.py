"""The pure model of p2p-chat: entities, value objects and domain rules. No I/O, no clock reads."""
