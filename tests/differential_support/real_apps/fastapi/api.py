"""A FastAPI app served by uvicorn with uvloop and httptools: its answer is validated by
pydantic (pydantic-core's native extension) and names the event loop that served it."""

import asyncio
import importlib.metadata

import fastapi
import pydantic


class Greeting(pydantic.BaseModel):
    app: str
    message: str
    loop: str
    versions: dict[str, str]


app = fastapi.FastAPI()


@app.get("/")
async def index() -> Greeting:
    return Greeting(
        app="fastapi",
        message="hello",
        loop=type(asyncio.get_running_loop()).__module__,
        versions={
            name: importlib.metadata.version(name)
            for name in ("fastapi", "pydantic-core", "uvicorn", "uvloop", "httptools")
        },
    )
