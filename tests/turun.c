/* turun: the Check runner every suite's main shares (testutil.h); apart
 * from testutil.c so programs that link libtestutil without Check still link. */
#include "config.h"

#include "tests/testutil.h"

#include <check.h>
#include <stdlib.h>

TCase *tu_tcase(Suite *s, const char *name, double timeout)
{
	TCase *tc = tcase_create(name);
	if (timeout > 0)
		tcase_set_timeout(tc, timeout);
	suite_add_tcase(s, tc);
	return tc;
}

int tu_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
