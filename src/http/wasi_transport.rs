//! The wasi:http client behind the core's `Transport`, written once for both
//! builds: the harness build expands it over its generated bindings, the Spin
//! build over the `wasi` crate's (the same interfaces, different modules).
//! A request is started and its body sent in `start`; the response is read
//! in `wait`, so requests the core starts together are in flight together.

/// Defines `WasiTransport` (and its pending response) over the wasi:http
/// bindings module named `$w` (with `http`, `io` and `clocks` inside).
#[doc(hidden)]
#[macro_export]
macro_rules! wasi_http_transport {
    ($w:ident) => {
        struct WasiTransport;

        /// Blocks until `ready` is, doing `meanwhile` at every wake-up and
        /// at least every `MEANWHILE_EVERY`: a long transfer made of many
        /// short waits (a body arriving a frame at a time) does it too.
        fn block_on(ready: &$w::io::poll::Pollable, meanwhile: &dyn $crate::ports::Meanwhile) {
            let every = $crate::ports::MEANWHILE_EVERY.as_nanos() as u64;
            loop {
                let timer = $w::clocks::monotonic_clock::subscribe_duration(every);
                let woken = $w::io::poll::poll(&[ready, &timer]);
                meanwhile.tick();
                if woken.contains(&0) {
                    return;
                }
            }
        }

        /// A request whose body is sent; the response is awaited in `wait`.
        struct WasiPending {
            future: $w::http::types::FutureIncomingResponse,
            what: String,
            authority: String,
            write_error: Option<String>,
            in_pieces: bool,
        }

        /// A wasi:http error as the core's: a denial is final, the rest is the network.
        fn transport_error(
            e: $w::http::types::ErrorCode,
            what: &str,
            authority: &str,
            write_error: Option<&str>,
        ) -> $crate::ports::TransportError {
            match e {
                $w::http::types::ErrorCode::HttpRequestDenied => {
                    $crate::ports::TransportError::Denied { authority: authority.to_string() }
                }
                other => {
                    let why = network_error_text(other, authority);
                    $crate::ports::TransportError::Failed(match write_error {
                        Some(w) => format!("{what} failed: {w}; then {why}"),
                        None => format!("{what} failed: {why}"),
                    })
                }
            }
        }

        /// The errors a wrong URL or a host that is down gives, in words
        /// (the rest as wasi:http names them).
        fn network_error_text(e: $w::http::types::ErrorCode, authority: &str) -> String {
            use $w::http::types::ErrorCode as E;
            match e {
                E::DnsError(p) => format!(
                    "the host name of {authority} did not resolve ({}): check the URL setting",
                    p.rcode.unwrap_or_else(|| "no answer".into())
                ),
                E::DnsTimeout => format!("looking up the host name of {authority} timed out"),
                E::ConnectionRefused => {
                    format!("{authority} refused the connection: check the URL setting and that the service is up")
                }
                E::ConnectionTimeout => format!("connecting to {authority} timed out"),
                E::ConnectionTerminated => format!("{authority} closed the connection before answering"),
                E::ConnectionReadTimeout | E::HttpResponseTimeout => format!("{authority} did not answer in time"),
                E::DestinationNotFound | E::DestinationUnavailable | E::DestinationIpUnroutable => {
                    format!("{authority} cannot be reached from here")
                }
                E::TlsCertificateError => format!("{authority}'s TLS certificate was not accepted"),
                E::TlsProtocolError => format!("the TLS handshake with {authority} failed (is the URL http://?)"),
                other => format!("{other:?}"),
            }
        }

        impl $crate::ports::PendingResponse for WasiPending {
            fn wait(
                self: Box<Self>,
                meanwhile: &dyn $crate::ports::Meanwhile,
            ) -> Result<$crate::http::HttpResponse, $crate::ports::TransportError> {
                use $crate::ports::TransportError::Failed;
                use $w::http::types as http;
                let WasiPending { future, what, authority, write_error, in_pieces } = *self;
                let response = loop {
                    match future.get() {
                        Some(result) => break result,
                        None => block_on(&future.subscribe(), meanwhile),
                    }
                };
                let response = response
                    .map_err(|_| Failed("the response was already taken".to_string()))?
                    .map_err(|e| transport_error(e, &what, &authority, write_error.as_deref()))?;
                let status = response.status();
                let headers: Vec<(String, String)> = response
                    .headers()
                    .entries()
                    .into_iter()
                    .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
                    .collect();
                let incoming = response.consume().map_err(|_| Failed("response body unavailable".to_string()))?;
                // Sized from Content-Length when the server sent one (up to
                // 32 MiB; beyond, or without one, it grows as read): a Bulk
                // job's results body grown by doubling had to be copied
                // whenever another allocation lay above it (+15 MB peak).
                let announced = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                // Kept as read when asked for (a successful answer only: an
                // error's body is read as one, for its message).
                let in_pieces = in_pieces && (200..300).contains(&status);
                let mut bytes = Vec::with_capacity(if in_pieces { 0 } else { announced.min(32 << 20) });
                let mut pieces = Vec::new();
                {
                    let stream =
                        incoming.stream().map_err(|_| Failed("response body stream unavailable".to_string()))?;
                    loop {
                        match stream.read(64 * 1024) {
                            Ok(chunk) if chunk.is_empty() => block_on(&stream.subscribe(), meanwhile),
                            Ok(chunk) if in_pieces => pieces.push(chunk),
                            Ok(chunk) => bytes.extend_from_slice(&chunk),
                            Err($w::io::streams::StreamError::Closed) => break,
                            Err(e) => return Err(Failed(format!("reading the response of {what}: {e:?}"))),
                        }
                    }
                }
                drop(http::IncomingBody::finish(incoming));
                Ok($crate::http::HttpResponse { status, headers, body: bytes, pieces })
            }
        }

        impl $crate::ports::Transport for WasiTransport {
            fn start(
                &self,
                request: &$crate::http::HttpRequest,
                meanwhile: &dyn $crate::ports::Meanwhile,
            ) -> Result<Box<dyn $crate::ports::PendingResponse>, $crate::ports::TransportError> {
                use $crate::http::Method;
                use $crate::ports::TransportError::Failed;
                use $w::http::types as http;
                let target = $crate::http::RequestTarget::parse(&request.url).map_err(Failed)?;
                let mut entries: Vec<(String, Vec<u8>)> =
                    request.headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec())).collect();
                // The length is known: sent, the body goes out whole rather
                // than chunked, which not every endpoint is documented to take.
                let length: usize = request.body.pieces().map(<[u8]>::len).sum();
                let sends_body = matches!(request.method, Method::Post | Method::Put | Method::Patch);
                if (sends_body || length > 0) && !entries.iter().any(|(n, _)| n == "content-length") {
                    entries.push(("content-length".to_string(), length.to_string().into_bytes()));
                }
                let headers =
                    http::Fields::from_list(&entries).map_err(|e| Failed(format!("invalid request header: {e:?}")))?;
                let outgoing = http::OutgoingRequest::new(headers);
                let method = match request.method {
                    Method::Get => http::Method::Get,
                    Method::Post => http::Method::Post,
                    Method::Put => http::Method::Put,
                    Method::Patch => http::Method::Patch,
                    Method::Delete => http::Method::Delete,
                };
                let scheme = if target.https { http::Scheme::Https } else { http::Scheme::Http };
                let set = [
                    outgoing.set_method(&method),
                    outgoing.set_scheme(Some(&scheme)),
                    outgoing.set_authority(Some(&target.authority)),
                    outgoing.set_path_with_query(Some(&target.path_with_query)),
                ];
                if set.iter().any(Result::is_err) {
                    return Err(Failed(format!("the host refused the request line of {}", request.describe())));
                }
                let body = outgoing.body().map_err(|_| Failed("request body unavailable".to_string()))?;
                // Start the request first: the host streams the body as it is written.
                let future = $w::http::outgoing_handler::handle(outgoing, None)
                    .map_err(|e| transport_error(e, &request.describe(), &target.authority, None))?;
                // A server may refuse the body part-way (413, say) and answer anyway:
                // keep the write error, but prefer the response if one arrives.
                let mut write_error = None;
                {
                    let stream = body.write().map_err(|_| Failed("request body stream unavailable".to_string()))?;
                    // As much as the host permits per write (`check-write`;
                    // wasmtime allows 1 MiB), flushed once: 4 KiB
                    // `blocking-write-and-flush` calls made the component and
                    // the host's HTTP task take turns 175 times for one
                    // Composite body.
                    for mut rest in request.body.pieces() {
                        while !rest.is_empty() && write_error.is_none() {
                            match stream.check_write() {
                                Ok(0) => block_on(&stream.subscribe(), meanwhile),
                                Ok(permitted) => {
                                    let n = rest.len().min(usize::try_from(permitted).unwrap_or(usize::MAX));
                                    match stream.write(&rest[..n]) {
                                        Ok(()) => rest = &rest[n..],
                                        Err(e) => write_error = Some(format!("writing the request body: {e:?}")),
                                    }
                                }
                                Err(e) => write_error = Some(format!("writing the request body: {e:?}")),
                            }
                        }
                    }
                    // `blocking-flush`, with the run's work done while it waits.
                    if write_error.is_none() {
                        let flushed = stream.flush().and_then(|()| {
                            block_on(&stream.subscribe(), meanwhile);
                            stream.check_write().map(drop)
                        });
                        if let Err(e) = flushed {
                            write_error = Some(format!("writing the request body: {e:?}"));
                        }
                    }
                }
                let finished = http::OutgoingBody::finish(body, None);
                if write_error.is_none() {
                    finished.map_err(|e| Failed(format!("finishing the request body: {e:?}")))?;
                }
                Ok(Box::new(WasiPending {
                    future,
                    what: request.describe(),
                    authority: target.authority,
                    write_error,
                    in_pieces: request.in_pieces,
                }))
            }
        }
    };
}
