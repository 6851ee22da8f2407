/* llamacpp_chat: a conversation rendered with a GGUF file's chat template as
 * llama.cpp's chat mode renders it, for tests/e2e_chat.sh:
 *   llamacpp_chat MODEL.gguf CONVERSATION OUT
 * CONVERSATION has a message a line, "role<TAB>content"; OUT gets the prompt
 * llama_chat_apply_template makes of them with tokenizer.chat_template
 * (llama_model_chat_template), the assistant's turn opened.  That function
 * does not run Jinja: it recognizes the templates it knows (ChatML by
 * <|im_start|>) and formats them itself; it fails on any other.  Built by the
 * script against the llama.cpp tests/llamacpp_build.sh builds, not by make.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

enum { MAX_MSG = 64, MAX_LINE = 4096 };

static int die(const char *what)
{
    fprintf(stderr, "llamacpp_chat: %s\n", what);
    return 1;
}

/* The messages of path, *n of them; their strings in lines. */
static int read_conversation(const char *path, llama_chat_message *msg, size_t *n,
                             char lines[][MAX_LINE])
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    *n = 0;
    while (*n < MAX_MSG && fgets(lines[*n], MAX_LINE, f)) {
        char *tab = strchr(lines[*n], '\t');
        if (!tab)
            break;
        *tab = 0;
        tab[strcspn(tab + 1, "\n") + 1] = 0;
        msg[*n] = (llama_chat_message){.role = lines[*n], .content = tab + 1};
        ++*n;
    }
    fclose(f);
    return *n > 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return die("usage: llamacpp_chat MODEL.gguf CONVERSATION OUT");
    static char lines[MAX_MSG][MAX_LINE];
    llama_chat_message msg[MAX_MSG];
    size_t n;
    if (read_conversation(argv[2], msg, &n, lines) != 0)
        return die("cannot read the conversation (role<TAB>content lines)");
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model)
        return die("llama.cpp cannot load the model");
    const char *tmpl = llama_model_chat_template(model, NULL);
    if (!tmpl)
        return die("the model has no tokenizer.chat_template");
    int32_t len = llama_chat_apply_template(tmpl, msg, n, true, NULL, 0);
    char *buf = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (len < 0 || !buf || llama_chat_apply_template(tmpl, msg, n, true, buf, len + 1) != len)
        return die("llama_chat_apply_template does not know the model's template");
    FILE *out = fopen(argv[3], "wb");
    if (!out || fwrite(buf, 1, (size_t)len, out) != (size_t)len || fclose(out) != 0)
        return die("cannot write the output");
    printf("llamacpp_chat: %d bytes\n", len);
    free(buf);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
