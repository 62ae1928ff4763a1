# One image for web and workers. TORCH_INDEX_URL picks the PyTorch build:
#   CPU (default): https://download.pytorch.org/whl/cpu    NVIDIA: https://download.pytorch.org/whl/cu128
FROM python:3.11-slim
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 DJANGO_SETTINGS_MODULE=webapp.settings
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1 --index-url ${TORCH_INDEX_URL} \
 && pip install --no-cache-dir -r requirements.txt
COPY . .
RUN useradd --create-home app && mkdir -p /data/artifacts /data/media /data/var && chown -R app /data
USER app
EXPOSE 8000
CMD ["gunicorn", "webapp.wsgi:application", "--bind", "0.0.0.0:8000"]
