"""The monthly cost gate (cost.monthly, `nox -s cost`): what each platform config costs a month.

    platforms.py  fly.toml, railway.toml, cloudrun.yaml -> the machine they ask for (CPUs, memory, volume,
                  when it stops); memory sizes in each platform's units
    duty.py       the hours a month a machine that can stop runs: the profile's assumption, or a watch report
    pricing.py    the price table (prices.toml) and the arithmetic, line by line, for the report
    check.py      cost.monthly for one config: the estimate as a report section, then the measure
    test_cost.py  one test per config (conftest.py: the options, the configs, the prices, the assumptions)

Unit-tested in tests/test_gate_cost.py.
"""
