# client: files of this directory, included by ../Makefile.am
