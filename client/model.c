/* model: attach and detach a model, its tensor table and name index, and the
 * checked entry points of uw_decode / uw_matmul (the backend does the work). */
#include "config.h"

#include "client/client.h"

#include <stdlib.h>
#include <string.h>

const struct cl_backend *cl_backend_get(uint32_t id, struct uwerr *e)
{
	switch (id) {
	case UW_BACKEND_HOST:
		return &cl_backend_host;
	case UW_BACKEND_CUDA:
#ifdef HAVE_CUDA
		return &cl_backend_cuda;
#else
		uwerr_set(e, EOPNOTSUPP,
			  "the model lives on a CUDA device: client built without CUDA");
		return NULL;
#endif
	}
	uwerr_set(e, EBADMSG, "unknown backend %u", id);
	return NULL;
}

/* FNV-1a: tensor names are short and few; this keeps lookups O(1). */
static uint64_t name_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
	return h;
}

static int build_index(struct uw_model *m, struct uwerr *e)
{
	size_t n = m->ar.ntensors, size = 16;
	while (size < 2 * n)
		size *= 2;
	m->index = calloc(size, sizeof(*m->index));
	if (!m->index)
		return uwerr_set(e, ENOMEM, "index of %zu tensors: out of memory", n);
	m->index_mask = size - 1;
	for (size_t i = 0; i < n; i++) {
		const char *name = m->ar.tensors[i].name;
		size_t h = name_hash(name) & m->index_mask;
		for (; m->index[h]; h = (h + 1) & m->index_mask)
			if (!strcmp(m->ar.tensors[m->index[h] - 1].name, name))
				return uwerr_set(e, EBADMSG, "reply names tensor %s twice", name);
		m->index[h] = (uint32_t)i + 1;
	}
	return 0;
}

static int build_tensors(struct uw_model *m, struct uwerr *e)
{
	size_t n = m->ar.ntensors;
	m->tensors = calloc(n ? n : 1, sizeof(*m->tensors));
	if (!m->tensors)
		return uwerr_set(e, ENOMEM, "table of %zu tensors: out of memory", n);
	for (size_t i = 0; i < n; i++) {
		const struct proto_tensor *pt = &m->ar.tensors[i];
		const struct cl_buf *b = &m->bufs[pt->buf];  /* checked by dec_attach_reply */
		struct uw_tensor *t = &m->tensors[i];
		t->m = m;
		t->pt = pt;
		t->host = b->host ? (const uint8_t *)b->host + pt->offset : NULL;
		t->dev = b->dev ? b->dev + pt->offset : 0;
	}
	return build_index(m, e);
}

/* Unmap and free; tell the daemon the lease ended if it is listening. The
 * lease of a disconnected client already ended with its socket. */
static int model_destroy(struct uw_model *m, struct uwerr *e)
{
	int rc = 0;
	if (m->leased) {
		struct msg_detach d = { .lease = m->ar.lease };
		struct wbuf w = {0};
		struct proto_msg reply;
		struct rbuf body;
		rc = enc_detach(&w, &d);
		if (rc < 0)
			rc = cl_enc_fail(rc, "detach", e);
		else
			rc = cl_call(m->c, OP_DETACH, &w, &reply, &body, e);
		if (rc == 0) {
			rc = cl_body_done(&body, OP_DETACH, e);
			proto_msg_free(&reply);
		}
		wb_free(&w);
		if (rc == -ENOTCONN)
			rc = 0;
		else if (rc < 0)
			uwerr_prefix(e, "detach %s", m->name);
	}
	for (uint32_t i = 0; i < m->nimported; i++)
		m->be->release(&m->bufs[i]);
	msg_attach_reply_free(&m->ar);
	free(m->bufs);
	free(m->tensors);
	free(m->index);
	free(m->name);
	cl_unref(m->c);
	free(m);
	return rc;
}

/* Take every fd of the reply and import it with the model's backend. */
static int import_all(struct uw_model *m, struct proto_msg *reply, struct uwerr *e)
{
	m->bufs = calloc(m->ar.nbufs ? m->ar.nbufs : 1, sizeof(*m->bufs));
	if (!m->bufs)
		return uwerr_set(e, ENOMEM, "%u buffers: out of memory", m->ar.nbufs);
	for (uint32_t i = 0; i < m->ar.nbufs; i++) {
		int fd = proto_msg_take_fd(reply, (int)i);
		int rc = m->be->import(fd, m->ar.buf_size[i], m->ar.device_uuid,
				       &m->bufs[i], e);
		if (rc < 0)
			return uwerr_prefix(e, "buffer %u", i);
		m->nimported = i + 1;
	}
	return 0;
}

UW_API int uw_attach(uw_client *c, const char *model, uw_model **out)
{
	struct uwerr e = {0}, e2 = {0};
	struct msg_attach a = { .name = (char *)model };
	struct wbuf w = {0};
	struct proto_msg reply;
	struct rbuf body;
	struct uw_model *m;
	int rc;
	if (!out)
		return cl_ret(&e, uwerr_set(&e, EINVAL, "uw_attach: out is NULL"));
	*out = NULL;
	if (!c || !model)
		return cl_ret(&e, uwerr_set(&e, EINVAL, "uw_attach: NULL argument"));
	m = calloc(1, sizeof(*m));
	if (!m || !(m->name = strdup(model))) {
		free(m);
		return cl_ret(&e, uwerr_set(&e, ENOMEM, "attach %s: out of memory", model));
	}
	m->c = c;
	cl_ref(c);
	m->be = &cl_backend_host;   /* until the reply names the backend */

	rc = enc_attach(&w, &a);
	if (rc < 0) {
		wb_free(&w);
		rc = cl_enc_fail(rc, "attach", &e);
		model_destroy(m, &e2);
		return cl_ret(&e, rc);
	}
	rc = cl_call(c, OP_ATTACH, &w, &reply, &body, &e);
	wb_free(&w);
	if (rc < 0) {
		model_destroy(m, &e2);
		return cl_ret(&e, rc);
	}
	rc = dec_attach_reply(&body, reply.nfds, &m->ar, &e);
	if (rc < 0) {
		/* The lease, if any, is unknown: only closing the connection
		 * ends it, and the stream cannot be trusted either. */
		cl_shutdown(c);
		goto fail;
	}
	m->leased = 1;
	m->be = cl_backend_get(m->ar.backend, &e);
	if (!m->be) {
		m->be = &cl_backend_host;
		rc = -e.code;
		goto fail;
	}
	rc = import_all(m, &reply, &e);
	if (rc == 0)
		rc = build_tensors(m, &e);
	if (rc < 0)
		goto fail;
	proto_msg_free(&reply);
	*out = m;
	return 0;
fail:
	uwerr_prefix(&e, "attach %s", model);
	proto_msg_free(&reply);
	model_destroy(m, &e2);
	return cl_ret(&e, rc);
}

UW_API int uw_detach(uw_model *m)
{
	struct uwerr e = {0};
	if (!m)
		return 0;
	return cl_ret(&e, model_destroy(m, &e));
}

UW_API int uw_model_backend(const uw_model *m)
{
	return m ? (int)m->ar.backend : -EINVAL;
}

UW_API size_t uw_model_tensor_count(const uw_model *m)
{
	return m ? m->ar.ntensors : 0;
}

UW_API const uw_tensor *uw_model_tensor(const uw_model *m, size_t i)
{
	return m && i < m->ar.ntensors ? &m->tensors[i] : NULL;
}

UW_API const uw_tensor *uw_model_find(const uw_model *m, const char *name)
{
	if (!m || !name)
		return NULL;
	for (size_t h = name_hash(name) & m->index_mask; m->index[h];
	     h = (h + 1) & m->index_mask) {
		const uw_tensor *t = &m->tensors[m->index[h] - 1];
		if (!strcmp(t->pt->name, name))
			return t;
	}
	return NULL;
}

UW_API int uw_tensor_info(const uw_tensor *t, struct uw_tensor_info *info)
{
	struct uwerr e = {0};
	if (!t || !info)
		return cl_ret(&e, uwerr_set(&e, EINVAL, "uw_tensor_info: NULL argument"));
	const struct proto_tensor *pt = t->pt;
	memset(info, 0, sizeof(*info));
	info->name = pt->name;
	info->dtype = pt->dtype;
	info->ndim = pt->ndim;
	memcpy(info->shape, pt->shape, sizeof(info->shape));
	info->raw_bytes = pt->raw_bytes;
	info->layout = pt->layout;
	return 0;
}

UW_API const void *uw_tensor_host_ptr(const uw_tensor *t)
{
	return t ? t->host : NULL;
}

UW_API uint64_t uw_tensor_device_ptr(const uw_tensor *t)
{
	return t ? t->dev : 0;
}

UW_API int uw_decode(const uw_tensor *t, void *out, size_t out_bytes, void *stream)
{
	struct uwerr e = {0};
	int rc;
	if (!t || !out)
		rc = uwerr_set(&e, EINVAL, "uw_decode: %s is NULL", t ? "out" : "the tensor");
	else if (out_bytes < t->pt->raw_bytes)
		rc = uwerr_set(&e, EINVAL, "decode %s: out holds %zu bytes, the tensor needs %llu",
			       t->pt->name, out_bytes, (unsigned long long)t->pt->raw_bytes);
	else
		rc = t->m->be->decode(t, out, out_bytes, stream, &e);
	return cl_ret(&e, rc);
}

/* The checks of a matmul's operands; y's elements are y_size bytes. */
static int matmul_check(const uw_tensor *t, const void *x, size_t batch, const void *y,
			size_t y_size, const char *fn, struct uwerr *e)
{
	size_t nx, ny;
	if (!t || !x || !y)
		return uwerr_set(e, EINVAL, "%s: %s is NULL", fn,
				 !t ? "the tensor" : !x ? "x" : "y");
	if (t->pt->dtype != UW_DTYPE_BF16 || t->pt->ndim != 2)
		return uwerr_set(e, EINVAL,
				 "matmul %s: needs a 2-D BF16 tensor, not %u-D of dtype %u",
				 t->pt->name, t->pt->ndim, t->pt->dtype);
	if (batch == 0)
		return uwerr_set(e, EINVAL, "matmul %s: batch is 0", t->pt->name);
	if (uw_mul_size(batch, t->pt->layout.cols, &nx) < 0 ||
	    uw_mul_size(nx, sizeof(uint16_t), &nx) < 0 ||
	    uw_mul_size(batch, t->pt->layout.rows, &ny) < 0 ||
	    uw_mul_size(ny, y_size, &ny) < 0)
		return uwerr_set(e, EINVAL, "matmul %s: batch %zu overflows the operand size",
				 t->pt->name, batch);
	return 0;
}

/* uw_matmul and uw_matmul_f32. */
static int matmul_checked(const uw_tensor *t, const void *x, size_t batch, void *y,
			  uint32_t y_dtype, size_t y_size, void *stream, const char *fn)
{
	struct uwerr e = {0};
	int rc = matmul_check(t, x, batch, y, y_size, fn, &e);
	if (rc == 0)
		rc = t->m->be->matmul(t, x, batch, y, y_dtype, stream, &e);
	return cl_ret(&e, rc);
}

UW_API int uw_matmul2(const uw_tensor *t0, const uw_tensor *t1, const void *x, size_t batch,
		      void *y0, void *y1, void *stream)
{
	struct uwerr e = {0};
	int rc = matmul_check(t0, x, batch, y0, sizeof(uint16_t), "uw_matmul2", &e);
	if (rc == 0)
		rc = matmul_check(t1, x, batch, y1, sizeof(uint16_t), "uw_matmul2", &e);
	if (rc == 0 && t0->pt->layout.cols != t1->pt->layout.cols)
		rc = uwerr_set(&e, EINVAL, "uw_matmul2 %s, %s: %llu and %llu columns: one x cannot "
			       "feed both", t0->pt->name, t1->pt->name,
			       (unsigned long long)t0->pt->layout.cols,
			       (unsigned long long)t1->pt->layout.cols);
	if (rc < 0)
		return cl_ret(&e, rc);
	/* one launch where the backend has one for both; else one call each */
	if (t0->m->be == t1->m->be && t0->m->be->matmul2)
		rc = t0->m->be->matmul2(t0, t1, x, batch, y0, y1, stream, &e);
	else if ((rc = t0->m->be->matmul(t0, x, batch, y0, UW_DTYPE_BF16, stream, &e)) == 0)
		rc = t1->m->be->matmul(t1, x, batch, y1, UW_DTYPE_BF16, stream, &e);
	return cl_ret(&e, rc);
}

UW_API int uw_matmul(const uw_tensor *t, const void *x, size_t batch, void *y,
		     void *stream)
{
	return matmul_checked(t, x, batch, y, UW_DTYPE_BF16, sizeof(uint16_t), stream,
			      "uw_matmul");
}

UW_API int uw_matmul_f32(const uw_tensor *t, const void *x, size_t batch, float *y,
			 void *stream)
{
	return matmul_checked(t, x, batch, y, UW_DTYPE_F32, sizeof(float), stream,
			      "uw_matmul_f32");
}
