"""Allow `python -m appliance` as a synonym of the `debvisor` command."""

from appliance.cli import main

raise SystemExit(main())
