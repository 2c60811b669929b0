"""The replicas session: two app replicas sharing one Postgres behind the balancer
(validation/targets/replicas.py) act as one deployment. Any replica answers for a job another runs,
a database outage gets JSON 503s and the fleet recovers after it,
and a replica killed mid-job leaves its job interrupted, not running, while the survivor serves."""
