"""`qblock watch --print-task`: how the desktop starts the watcher by itself, for each OS.

- Windows: a scheduled task at log-on (PowerShell's Register-ScheduledTask: unlike `schtasks`
  it sets the working directory, and it lifts the default 72-hour time limit). It runs as the
  logged-on user, so mapped NAS drives (Z:) and the GPU are there.
- Linux: a systemd user service (with `loginctl enable-linger`, it runs without a log-in).
- macOS: a launchd agent.

Each text is complete: save it where its first comment says, run the commands it lists.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from xml.sax.saxutils import escape

TASK_NAME = "qblock watch"
SERVICE = "qblock-watch"
KINDS = ("windows", "systemd", "launchd")


def default_kind() -> str:
    return "windows" if os.name == "nt" else "launchd" if sys.platform == "darwin" else "systemd"


def qblock_command() -> list[str]:
    """This environment's `qblock`, by absolute path (a task starts with no venv activated)."""
    scripts = Path(sys.executable).parent
    for name in ("qblock.exe", "qblock"):
        if (scripts / name).is_file():
            return [str(scripts / name)]
    return [sys.executable, "-m", "qblock"]


def watch_command(every_s: float) -> list[str]:
    return [*qblock_command(), "watch", "--every", f"{every_s:g}"]


def _powershell(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def windows_task(root: Path, every_s: float) -> str:
    program, *arguments = watch_command(every_s)
    return f"""# qblock watch as a Windows scheduled task (no admin rights needed): register it with
#   qblock watch --print-task windows | Out-String | Invoke-Expression
# It starts at log-on as you, in {root}.
# Check it:  Get-ScheduledTaskInfo -TaskName '{TASK_NAME}'   Log: {root / '.qblock' / 'watch.log'}
# Start now: Start-ScheduledTask -TaskName '{TASK_NAME}'
# Remove it: Unregister-ScheduledTask -TaskName '{TASK_NAME}' -Confirm:$false
$action = New-ScheduledTaskAction -Execute {_powershell(program)} `
    -Argument {_powershell(subprocess.list2cmdline(arguments))} `
    -WorkingDirectory {_powershell(str(root))}
$trigger = New-ScheduledTaskTrigger -AtLogOn -User $env:USERNAME
$settings = New-ScheduledTaskSettingsSet -ExecutionTimeLimit ([TimeSpan]::Zero) -MultipleInstances IgnoreNew `
    -RestartCount 999 -RestartInterval (New-TimeSpan -Minutes 5) -StartWhenAvailable `
    -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries
$principal = New-ScheduledTaskPrincipal -UserId $env:USERNAME -LogonType Interactive -RunLevel Limited
Register-ScheduledTask -TaskName {_powershell(TASK_NAME)} -Action $action -Trigger $trigger -Settings $settings `
    -Principal $principal -Description 'Trains when new labels reach the git origin (qblock watch)' -Force
"""


def _systemd_word(word: str) -> str:
    word = word.replace("%", "%%")  # systemd's specifiers
    if any(c in word for c in ' \t"\\\''):
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def systemd_unit(root: Path, every_s: float) -> str:
    command = " ".join(_systemd_word(w) for w in watch_command(every_s))
    return f"""# qblock watch as a systemd user service. Install it:
#   mkdir -p ~/.config/systemd/user
#   qblock watch --print-task systemd > ~/.config/systemd/user/{SERVICE}.service
#   systemctl --user daemon-reload && systemctl --user enable --now {SERVICE}
#   loginctl enable-linger "$USER"    # keep it running when nobody is logged in
# Check it: systemctl --user status {SERVICE}; log: {root / '.qblock' / 'watch.log'}
[Unit]
Description=qblock watch: train when new labels reach the git origin ({root.name})

[Service]
Type=simple
WorkingDirectory={str(root).replace('%', '%%')}
ExecStart={command}
Environment=PYTHONUNBUFFERED=1
Restart=on-failure
RestartSec=60

[Install]
WantedBy=default.target
"""


def launchd_plist(root: Path, every_s: float) -> str:
    label = "org.qblock.watch"
    arguments = "\n".join(f"    <string>{escape(w)}</string>" for w in watch_command(every_s))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- qblock watch as a launchd agent. Install it: save this text as
  ~/Library/LaunchAgents/{label}.plist, then run
  launchctl bootstrap gui/$(id -u) ~/Library/LaunchAgents/{label}.plist
Log: {escape(str(root / '.qblock' / 'watch.log')).replace('--', '- -')} -->
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>{label}</string>
  <key>ProgramArguments</key>
  <array>
{arguments}
  </array>
  <key>WorkingDirectory</key>
  <string>{escape(str(root))}</string>
  <key>RunAtLoad</key>
  <true/>
  <key>KeepAlive</key>
  <dict>
    <key>SuccessfulExit</key>
    <false/>
  </dict>
  <key>StandardErrorPath</key>
  <string>{escape(str(root / '.qblock' / 'watch.stderr.log'))}</string>
</dict>
</plist>
"""


def task_text(kind: str, root: Path, every_s: float) -> str:
    return {"windows": windows_task, "systemd": systemd_unit, "launchd": launchd_plist}[kind](root, every_s)
