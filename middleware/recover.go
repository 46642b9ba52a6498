package middleware

import (
	wmmiddleware "github.com/ThreeDotsLabs/watermill/message/router/middleware"
)

// Recover is watermill's Recoverer: a panic in the middleware inside it becomes
// an error (a watermill RecoveredPanicError with the stack). It allocates
// nothing on success, so Herald uses it as it is.
var Recover = wmmiddleware.Recoverer
