"""What keeps running on a machine, and the look at it: the hands-free loop (watch) and how the OS
starts it (start_up), the team's MLflow server (team_server) and its UI password (ui_auth), and
doctor's check of the whole setup. Built on sync/; nothing in sync/ imports from here."""
