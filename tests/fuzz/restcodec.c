/* restcodec: rest_decode of any payload, with the encoding, dtype and
 * decoded size the bundle's directory would give taken from the input's
 * first bytes: enc (1), dtype (1), nbytes (4, little-endian), then the
 * payload. What decodes must encode and decode back to the same bytes. */
#include "config.h"

#include <string.h>

#include "common/le.h"
#include "format/restcodec.h"
#include "tests/fuzz/fuzz.h"

#define HEAD 6

int fuzz_restcodec(const uint8_t *data, size_t size)
{
	if (size < HEAD)
		return 0;
	int enc = data[0], dtype = data[1];
	size_t nbytes = le32_get(data + 2);
	const uint8_t *payload = data + HEAD;
	size_t len = size - HEAD;
	if (nbytes > FUZZ_MAX_ALLOC)
		return 0;
	uint8_t *raw = malloc(nbytes ? nbytes : 1);
	struct uwerr e = {0};
	FUZZ_CHECK(raw);
	if (rest_decode(enc, dtype, payload, len, raw, nbytes, 1, &e) < 0) {
		FUZZ_CHECK(e.code == EBADMSG && e.msg[0]);
		free(raw);
		return 0;
	}
	struct rest_blob b = {0};
	uint8_t *back = malloc(nbytes ? nbytes : 1);
	FUZZ_CHECK(back);
	FUZZ_CHECK(rest_encode_with(enc, dtype, raw, nbytes, 1, &b, &e) == 0);
	FUZZ_CHECK(b.enc == enc);
	FUZZ_CHECK(rest_decode(enc, dtype, b.data, b.len, back, nbytes, 1, &e) == 0);
	FUZZ_CHECK(memcmp(raw, back, nbytes) == 0);
	free(b.data);
	free(back);
	free(raw);
	return 0;
}

FUZZ_ENTRY(restcodec)
