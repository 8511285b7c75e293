// The class gateway's checks that nginx cannot express on its own (njs, Debian's
// libnginx-mod-http-js). Loaded by gateway/nginx.conf; see server_setup/gateway/nginx.py.
//
// keyHash      js_set: sha256 (hex) of the bearer token; a map turns it into the student id,
//              so the key file on disk holds hashes only.
// checkBody    js_content: refuse a body that is not JSON or asks for more than the
//              max_tokens cap (400, JSON error), or an OpenAI request for a model this
//              server does not serve (404, naming the served ones: llama.cpp's server would
//              answer any name with its one model); fill in the cap when max_tokens is
//              missing; then hand the request to the engine (internal redirect keeps the
//              read body).
// countTokens  js_body_filter: passes every chunk on unchanged and notes the token counts the
//              engine reports (non-streamed: its "usage"; streamed: one per content chunk).

var crypto = require('crypto');

function keyHash(r) {
    var auth = r.headersIn.Authorization || '';
    var m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    return m ? crypto.createHash('sha256').update(m[1]).digest('hex') : '';
}

function refuse(r, status, message, code) {
    r.headersOut['Content-Type'] = 'application/json';
    r.variables.refusal = code;
    r.return(status, JSON.stringify({
        error: {message: message, type: 'invalid_request_error', param: null, code: code}
    }));
}

function positiveInt(v) {
    return typeof v === 'number' && v === Math.floor(v) && v >= 1;
}

function checkBody(r) {
    // only generation requests carry max_tokens (not /v1/models or /extras/tokenize)
    if (r.method !== 'POST' || !/(completions|generate|generate_stream)$/.test(r.uri)) {
        r.internalRedirect('@engine');
        return;
    }
    var cap = Number(r.variables.max_tokens_cap);
    var text = r.requestText;
    if (text === undefined) {  // spilled to a temp file: client_body_buffer_size is too small
        refuse(r, 413, 'The request body is too large for this server.', 'body_too_large');
        return;
    }
    var body;
    try {
        body = JSON.parse(text);
    } catch (e) {
        refuse(r, 400, 'The request body is not valid JSON.', 'invalid_json');
        return;
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        refuse(r, 400, 'The request body must be a JSON object.', 'invalid_json');
        return;
    }
    // the OpenAI API names the model in the body (Triton's in the path, which it checks)
    var served = (r.variables.served_models || '').split(',').filter(Boolean);
    if (r.uri.indexOf('/v1/') === 0 && served.length && typeof body.model === 'string'
        && body.model !== '' && served.indexOf(body.model) < 0) {
        refuse(r, 404, 'The model \'' + body.model + '\' is not served here: ask for '
               + served.join(' or ') + ' (GET /v1/models lists them).', 'model_not_found');
        return;
    }
    // Triton's generate endpoint keeps sampling options under "parameters"
    var where = (r.uri.indexOf('/v2/') === 0 && typeof body.parameters === 'object'
                 && body.parameters !== null) ? body.parameters : body;
    var given = where.max_tokens;
    var named = 'max_tokens';
    if (given === undefined || given === null) {
        given = where.max_completion_tokens;
        named = 'max_completion_tokens';
    }
    if (given !== undefined && given !== null) {
        // llama-cpp-python reads 0 or a negative number as "until the context is full"
        if (!positiveInt(given)) {
            refuse(r, 400, named + ' must be a whole number from 1 to ' + cap + '.',
                   'invalid_max_tokens');
            return;
        }
        if (given > cap) {
            refuse(r, 400, named + ' ' + given + ' is over this server\'s limit of ' + cap
                   + ' tokens per request: ask for ' + cap + ' or fewer.', 'max_tokens_too_large');
            return;
        }
    }
    r.variables.max_tokens_asked = String(given === undefined || given === null ? cap : given);
    if (named === 'max_tokens' && given !== undefined && given !== null) {
        r.internalRedirect('@engine');
        return;
    }
    // missing (or only max_completion_tokens, which llama-cpp-python ignores): the engine
    // would generate until its context is full, so the gateway sets max_tokens itself
    where.max_tokens = Number(r.variables.max_tokens_asked);
    r.variables.rewritten_body = JSON.stringify(body);
    r.internalRedirect('@engine_rewritten');
}

function countTokens(r, data, flags) {
    r.sendBuffer(data, flags);  // unchanged and at once: streaming stays streaming
    var ctx = r.variables;
    var type = r.headersOut['Content-Type'] || '';
    if (type.indexOf('text/event-stream') === 0) {
        // SSE: "data: {json}\n\n" events, possibly split across chunks; count content deltas
        var pending = (ctx.sse_rest || '') + data;
        var events = pending.split('\n\n');
        ctx.sse_rest = events.pop();
        var n = Number(ctx.completion_tokens || 0);
        for (var i = 0; i < events.length; i++) {
            var line = events[i].trim();
            if (line.indexOf('data:') !== 0) continue;
            var payload = line.slice(5).trim();
            if (payload === '[DONE]') continue;
            try {
                var ev = JSON.parse(payload);
                if (ev.usage && ev.usage.completion_tokens !== undefined) {
                    n = ev.usage.completion_tokens;
                    ctx.prompt_tokens = String(ev.usage.prompt_tokens);
                } else if (ev.choices && ev.choices.length && ev.choices[0].delta
                           && ev.choices[0].delta.content) {
                    n += 1;
                }
            } catch (e) {
                // not JSON (an engine error message): nothing to count
            }
        }
        ctx.completion_tokens = String(n);
        return;
    }
    if (type.indexOf('application/json') !== 0) return;
    ctx.json_body = (ctx.json_body || '') + data;
    if (!flags.last) return;
    try {
        var usage = JSON.parse(ctx.json_body).usage;
        if (usage) {
            ctx.completion_tokens = String(usage.completion_tokens);
            ctx.prompt_tokens = String(usage.prompt_tokens);
        }
    } catch (e) {
        // not JSON: nothing to count
    }
    ctx.json_body = '';
}

export default {keyHash, checkBody, countTokens};
