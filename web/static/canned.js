// Canned responses in the composer: type "/" and a shortcut (web/agent/canned.py).
