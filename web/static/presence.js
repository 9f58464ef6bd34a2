// Presence heartbeat: tells the server this agent still has a console open (web/agent/presence.py).
