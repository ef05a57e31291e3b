# man: files of this directory, included by ../Makefile.am
dist_man_MANS += man/unweightctl.1
