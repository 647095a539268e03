"""The PXE boot server inside a node: its API routes, enrolment routes and subsystem builder.

The `pxe` package is the boot-server library (dnsmasq, scripts, boot files, enrolment logic);
this package wires it into the appliance (permissions, forwarding, audit, the node database).
"""
