# systemd: the service and socket units of unweightd, and the system user
# it runs as. The service names the installed binary, so it is generated
# with this build's sbindir.
systemdunitdir = $(prefix)/lib/systemd/system
systemdunit_DATA = systemd/unweightd.service systemd/unweightd.socket
sysusersdir = $(prefix)/lib/sysusers.d
sysusers_DATA = systemd/unweight.conf
EXTRA_DIST += systemd/unweightd.service.in systemd/unweightd.socket \
	systemd/unweight.sysusers.conf
CLEANFILES += systemd/unweightd.service systemd/unweight.conf

systemd/unweightd.service: $(srcdir)/systemd/unweightd.service.in Makefile
	$(AM_V_GEN)$(MKDIR_P) systemd && \
	sed -e 's|@sbindir[@]|$(sbindir)|g' $(srcdir)/systemd/unweightd.service.in > $@.tmp && \
	mv $@.tmp $@

# sysusers.d wants it named after the package: unweight.conf.
systemd/unweight.conf: $(srcdir)/systemd/unweight.sysusers.conf
	$(AM_V_GEN)$(MKDIR_P) systemd && cp $(srcdir)/systemd/unweight.sysusers.conf $@
