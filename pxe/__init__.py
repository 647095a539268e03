"""The boot server: proxy-DHCP and TFTP through dnsmasq, iPXE scripts, enlistment, enrolment.

Filled in by the image and PXE issue; the package exists so the distribution's layout is fixed.
"""
