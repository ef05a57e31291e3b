# systemd: the service and socket units of unweightd. The service names the
# installed binary, so it is generated with this build's sbindir.
systemdunitdir = $(prefix)/lib/systemd/system
systemdunit_DATA = systemd/unweightd.service systemd/unweightd.socket
EXTRA_DIST += systemd/unweightd.service.in systemd/unweightd.socket
CLEANFILES += systemd/unweightd.service

systemd/unweightd.service: $(srcdir)/systemd/unweightd.service.in Makefile
	$(AM_V_GEN)$(MKDIR_P) systemd && \
	sed -e 's|@sbindir[@]|$(sbindir)|g' $(srcdir)/systemd/unweightd.service.in > $@.tmp && \
	mv $@.tmp $@
