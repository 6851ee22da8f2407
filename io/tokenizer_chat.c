/* tokenizer_chat: a tokenizer's chat template (io/tokenizer_internal.h): checked,
 * set, and read from a Hugging Face folder the way transformers (4.47 on) reads
 * it: chat_template.jinja when the folder has one, else tokenizer_config.json's
 * "chat_template".  Only the default template is carried: a folder that also
 * names others (a list in tokenizer_config.json, additional_chat_templates/) is
 * refused rather than exported without them.
 */
#include "io/tokenizer_internal.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fsutil.h"
#include "io/utf8.h"

/* 0 when s[0..n) is a template a tokenizer takes, else -1 with the reason. */
static int check_template(const char *s, size_t n, char *err, size_t errlen)
{
    if (n > TOKENIZER_CHAT_TEMPLATE_MAX)
        return fs_fail(err, errlen, "the chat template is %zu bytes, more than %d", n,
                       TOKENIZER_CHAT_TEMPLATE_MAX);
    const uint8_t *u = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        long step = utf8_step(u + i, n - i);
        if (step < 0)
            return fs_fail(err, errlen, "the chat template is not valid UTF-8 (byte %zu)", i);
        if (u[i] == 0)
            return fs_fail(err, errlen, "the chat template holds a NUL byte (byte %zu)", i);
        i += (size_t)step;
    }
    return 0;
}

int tokenizer_set_chat_template(tokenizer *t, const char *s, size_t n, char *err,
                                size_t errlen)
{
    char *copy = NULL;
    if (n > 0 && check_template(s, n, err, errlen) != 0)
        return -1;
    if (n > 0 && !(copy = malloc(n + 1)))
        return tok_fail_oom(err, errlen);
    if (copy) {
        memcpy(copy, s, n);
        copy[n] = 0;
    }
    free(t->chat_template);
    t->chat_template = copy;
    return 0;
}

const char *tokenizer_chat_template(const tokenizer *t)
{
    return t->chat_template;
}

/* tokenizer_config.json's "chat_template": a string, null, or a list of
 * {"name", "template"} (transformers' form for several) of which "default" is
 * taken and any other name refused.  *s NULL: none. */
static int config_template(const cJSON *v, const char **s, char *err, size_t errlen)
{
    *s = NULL;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (cJSON_IsString(v)) {
        *s = v->valuestring;
        return 0;
    }
    if (!cJSON_IsArray(v))
        return fs_fail(err, errlen, "\"chat_template\" is not a string or a list of "
                       "{\"name\", \"template\"}");
    int i = 0;
    for (const cJSON *e = v->child; e; e = e->next, i++) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
        const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(e, "template");
        if (!cJSON_IsString(name) || !cJSON_IsString(tmpl))
            return fs_fail(err, errlen, "\"chat_template\" entry %d is not {\"name\": a string, "
                           "\"template\": a string}", i);
        if (strcmp(name->valuestring, "default") != 0)
            return fs_fail(err, errlen, "\"chat_template\" names a template \"%.40s\": only the "
                           "default one is carried (remove the others)", name->valuestring);
        *s = tmpl->valuestring;
    }
    if (!*s)
        return fs_fail(err, errlen, "\"chat_template\" is a list without a \"default\" template");
    return 0;
}

/* tokenizer_config.json's template, when the folder has the file; its errors
 * name it. */
static int from_config(tokenizer *t, tok_hf_config *config, char *err, size_t errlen)
{
    char why[200] = "";
    const cJSON *root;
    if (tok_hf_config_root(config, &root, err, errlen) != 0)
        return -1;
    if (!root)
        return 0;
    const char *s = NULL;
    int rc = config_template(cJSON_GetObjectItemCaseSensitive(root, "chat_template"), &s, why,
                             sizeof why);
    if (rc == 0 && s)
        rc = tokenizer_set_chat_template(t, s, strlen(s), why, sizeof why);
    if (rc != 0) {
        fs_printable(why);   /* it may quote a name */
        fs_fail(err, errlen, "%s: %s", config->path, why);
    }
    return rc;
}

int tok_hf_chat_template(tokenizer *t, tok_hf_config *config, char *err, size_t errlen)
{
    const char *dir = config->dir;
    char path[PATH_MAX + 32], why[200] = "";
    if (fs_dir_has(dir, "additional_chat_templates", path, sizeof path))
        return fs_fail(err, errlen, "%s: named chat templates are not carried, only the "
                       "default one (remove the folder)", path);
    if (!fs_dir_has(dir, "chat_template.jinja", path, sizeof path))
        return from_config(t, config, err, errlen);
    uint8_t *data;
    size_t len;
    if (fs_read_file_max(path, TOKENIZER_CHAT_TEMPLATE_MAX, &data, &len, err, errlen) != 0)
        return -1;
    int rc = tokenizer_set_chat_template(t, (const char *)data, len, why, sizeof why);
    free(data);
    if (rc != 0)
        fs_fail(err, errlen, "%s: %s", path, why);
    return rc;
}
