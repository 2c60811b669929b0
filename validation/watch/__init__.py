"""The uptime watch: a bounded synthetic probe of a running app.

    nox -s watch -- --base-url https://cai-demo.fly.dev --minutes 5
    nox -s watch -- --target container --minutes 1 --interval 2 --restart-at 20

probes.py    one probe round (GET /health, GET /ready, POST /api/evaluate) and the fixed-interval loop
analysis.py  rounds -> availability, incidents, latency percentiles per probe and over time
writeup.py   the raw probes as CSV, the report.md section
plot.py      latency over time with the down periods shaded (PNG)
"""
