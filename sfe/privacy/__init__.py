"""Personal data at rest: per-subject field encryption, the key store and crypto-shredding.

Personal values (names, e-mail addresses, phone numbers, addresses, free text) are
sealed with AES-256-GCM under a key of their data subject (the Lead or Contact they
are about) before they reach Kafka or PostgreSQL, and opened only by the processes that
need them (the lead worker, the sinks). Erasing a subject destroys its key: every copy
of its personal values, in every topic and table, becomes unreadable at once, while
replays keep working and read those values as erased. See docs/privacy.md.
"""
